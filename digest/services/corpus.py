"""Corpus statistics for interest matching: document frequencies and field lengths, kept by ingest.

Ingest calls `corpus_stats_apply` in its own transaction with the analysed
terms of the papers it added (and, for papers whose text changed, the terms
they had before), so the counts in ``TermStat`` and ``CorpusStat`` always
describe the stored papers. `corpus_stats_rebuild` recounts everything, after
the alias map changed (the analyser then reads some words differently).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from django.db import transaction

from digest.models import CorpusStat, Paper, TermStat
from digest.tagging.analysis import FIELDS, Analyzer, current_analyzer, field_terms

BATCH = 1000
_WORD_COLUMNS = {name: f"{name}_words" for name in FIELDS}


def paper_texts(paper: Paper) -> dict[str, str]:
    """The fields interest matching reads, as ``Candidate.fields`` gives them."""
    return {
        "title": paper.title,
        "summary": paper.ai_summary,
        "keywords": " | ".join(str(k) for k in (paper.ai_keywords or [])),
        "abstract": paper.abstract,
    }


def corpus_stats_apply(
    *, added: Sequence[dict[str, list[str]]], removed: Sequence[dict[str, list[str]]] = ()
) -> None:
    """Count these papers' terms in (and the removed versions' terms out), in bulk."""
    if not added and not removed:
        return
    delta: Counter[str] = Counter()
    words: Counter[str] = Counter()
    for terms, sign in [(t, 1) for t in added] + [(t, -1) for t in removed]:
        for term in {term for values in terms.values() for term in values}:
            delta[term] += sign
        for name in FIELDS:
            words[name] += sign * len(terms.get(name, ()))
    with transaction.atomic():
        totals, _ = CorpusStat.objects.select_for_update().get_or_create(pk=1)
        totals.papers = max(0, totals.papers + len(added) - len(removed))
        for name, column in _WORD_COLUMNS.items():
            setattr(totals, column, max(0, getattr(totals, column) + words[name]))
        totals.save()
        changed = [term for term, value in delta.items() if value]
        existing: dict[str, TermStat] = {}
        for start in range(0, len(changed), BATCH):
            chunk = changed[start : start + BATCH]
            for row in TermStat.objects.select_for_update().filter(term__in=chunk):
                existing[row.term] = row
        to_update: list[TermStat] = []
        to_create: list[TermStat] = []
        for term in changed:
            stat = existing.get(term)
            if stat is None:
                if delta[term] > 0:
                    to_create.append(TermStat(term=term, papers=delta[term]))
            else:
                stat.papers = max(0, stat.papers + delta[term])
                to_update.append(stat)
        TermStat.objects.bulk_update(to_update, ["papers"], batch_size=BATCH)
        TermStat.objects.bulk_create(to_create, batch_size=BATCH)


def corpus_stats_rebuild(*, analyzer: Analyzer | None = None) -> int:
    """Recount every stored paper's terms from scratch; returns the number of papers."""
    analyzer = analyzer or current_analyzer()
    documents = 0
    with transaction.atomic():
        TermStat.objects.all().delete()
        CorpusStat.objects.all().delete()
        batch: list[dict[str, list[str]]] = []
        fields = ("title", "ai_summary", "ai_keywords", "abstract")
        for paper in Paper.objects.only(*fields).order_by("pk").iterator(chunk_size=BATCH):
            batch.append(field_terms(analyzer, paper_texts(paper)))
            documents += 1
            if len(batch) == BATCH:
                corpus_stats_apply(added=batch)
                batch = []
        corpus_stats_apply(added=batch)
    return documents


def terms_of(papers: Iterable[Paper], analyzer: Analyzer) -> list[dict[str, list[str]]]:
    return [field_terms(analyzer, paper_texts(paper)) for paper in papers]
