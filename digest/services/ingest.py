"""
Writes for papers: upsert scraped records, tag them, fetch a day from a source.

Every call is one transaction with bulk reads and bulk writes, so a day is
stored whole or not at all, and the number of queries does not grow with the
number of papers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from digest import sources
from digest.models import Paper, PaperTopic, Topic
from digest.services.corpus import corpus_stats_apply, terms_of
from digest.sources import http
from digest.sources.base import SOURCE_ARXIV, SOURCE_HF_API, SOURCE_HF_PAGE, PaperRecord, SourceError
from digest.tagging.analysis import current_analyzer
from digest.tagging.tagger import get_tagger

logger = logging.getLogger(__name__)

BATCH = 500
# A change in one of these means the paper's topics may change too.
TEXT_FIELDS = frozenset({"title", "abstract", "ai_keywords"})
# ...and these are the fields interest matching counts words in.
COUNTED_FIELDS = TEXT_FIELDS | {"ai_summary"}


@dataclass
class IngestResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    tagged: int = 0
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged

    def __add__(self, other: IngestResult) -> IngestResult:
        return IngestResult(
            created=self.created + other.created,
            updated=self.updated + other.updated,
            unchanged=self.unchanged + other.unchanged,
            tagged=self.tagged + other.tagged,
            source=self.source or other.source,
            notes=self.notes + other.notes,
        )

    def __str__(self) -> str:
        return f"created {self.created}, updated {self.updated}, unchanged {self.unchanged}"


def _is_hf(record: PaperRecord) -> bool:
    return record.source in (SOURCE_HF_API, SOURCE_HF_PAGE)


def merge_records(records: Iterable[PaperRecord]) -> dict[str, dict[str, Any]]:
    """Combine records of the same paper into one dict of field values.

    Hugging Face decides upvotes, counts, the featured day, keywords and links;
    arXiv adds categories and fills title, abstract, authors and dates only
    where Hugging Face left them empty. Hugging Face records are applied
    first, whatever order the records come in.
    """
    merged: dict[str, dict[str, Any]] = {}
    ordered = sorted(records, key=lambda record: 0 if _is_hf(record) else 1)
    for record in ordered:
        values = merged.get(record.arxiv_id)
        if values is None:
            values = merged[record.arxiv_id] = {"sources": []}
        if record.source not in values["sources"]:
            values["sources"].append(record.source)
        _apply(values, record)
    return merged


def _apply(values: dict[str, Any], record: PaperRecord) -> None:
    hf = _is_hf(record)
    for name, value in (
        ("title", record.title),
        ("abstract", record.abstract),
        ("authors", list(record.authors)),
        ("published_at", record.published_at),
    ):
        if value and (hf or not values.get(name)):
            values[name] = value
    if record.categories:
        values["categories"] = list(record.categories)
    if not hf:
        return
    values["upvotes"] = record.upvotes
    values["num_comments"] = record.num_comments
    for name, hf_value in (
        ("featured_on", record.featured_on),
        ("github_repo", record.github_repo),
        ("project_page", record.project_page),
        ("thumbnail_url", record.thumbnail_url),
        ("ai_keywords", list(record.ai_keywords)),
        ("ai_summary", record.ai_summary),
    ):
        if hf_value:
            values[name] = hf_value
    if record.github_stars is not None:
        values["github_stars"] = record.github_stars


# What arXiv may only fill in, never replace, on a paper Hugging Face described.
HF_TEXT_FIELDS = frozenset({"title", "abstract", "authors", "published_at"})


def _changes(paper: Paper, values: dict[str, Any]) -> dict[str, Any]:
    """Field values that differ from the stored paper. Empty never overwrites non-empty,
    and arXiv alone (a later night's listing) never overwrites Hugging Face's text."""
    changed = {}
    arxiv_only = not any(source in (SOURCE_HF_API, SOURCE_HF_PAGE) for source in values.get("sources", ()))
    described_by_hf = any(source in (SOURCE_HF_API, SOURCE_HF_PAGE) for source in paper.sources)
    for name, value in values.items():
        current = getattr(paper, name)
        if arxiv_only and described_by_hf and name in HF_TEXT_FIELDS and current:
            continue
        if name == "sources":
            value = current + [source for source in value if source not in current]
        elif name == "featured_on" and current is not None:
            continue  # the first featured day stands; HF features a paper once
        if value != current and (value or value == 0):
            changed[name] = value
    return changed


def papers_ingest(*, records: Sequence[PaperRecord]) -> IngestResult:
    """Upsert records by arXiv id and tag new or changed papers, all in one transaction.

    Running the same day twice changes only upvotes and counts. Curator fields
    and curator-set topics are never touched.
    """
    merged = merge_records(records)
    result = IngestResult()
    if not merged:
        return result
    now = timezone.now()
    with transaction.atomic():
        lock_paper_writes()
        existing: dict[str, Paper] = {}
        ids = list(merged)
        for start in range(0, len(ids), BATCH):
            for found in Paper.objects.filter(arxiv_id__in=ids[start : start + BATCH]):
                existing[found.arxiv_id] = found

        to_create: list[Paper] = []
        to_update: list[Paper] = []
        updated_fields: set[str] = set()
        to_tag: list[Paper] = []
        analyzer = current_analyzer()
        recounted_before: list[dict[str, list[str]]] = []
        recounted: list[Paper] = []
        for arxiv_id, values in merged.items():
            paper = existing.get(arxiv_id)
            if paper is None:
                to_create.append(Paper(arxiv_id=arxiv_id, **values))
                continue
            changed = _changes(paper, values)
            if not changed:
                result.unchanged += 1
                continue
            if COUNTED_FIELDS & changed.keys():
                recounted_before.extend(terms_of([paper], analyzer))
                recounted.append(paper)
            for name, value in changed.items():
                setattr(paper, name, value)
            paper.updated_at = now
            updated_fields.update(changed)
            to_update.append(paper)
            if TEXT_FIELDS & changed.keys():
                to_tag.append(paper)

        created = Paper.objects.bulk_create(to_create, batch_size=BATCH)
        if to_update:
            Paper.objects.bulk_update(to_update, [*sorted(updated_fields), "updated_at"], batch_size=BATCH)
        if any(paper.pk is None for paper in created):
            # Databases without RETURNING on bulk insert: read the new ids back.
            ids_by_arxiv = dict(
                Paper.objects.filter(arxiv_id__in=[p.arxiv_id for p in created]).values_list("arxiv_id", "pk")
            )
            for paper in created:
                paper.pk = ids_by_arxiv[paper.arxiv_id]
        result.created = len(created)
        result.updated = len(to_update)
        result.tagged = _tag(created + to_tag)
        corpus_stats_apply(added=terms_of([*created, *recounted], analyzer), removed=recounted_before)
    return result


# Key of the PostgreSQL advisory lock that ingests and retags hold while they write.
PAPER_WRITES_LOCK = 0x7061_7065_7273  # "papers"


def lock_paper_writes() -> None:
    """Serialise writers of papers and their tags until the transaction ends.

    Two ingests at once (a retried task beside the nightly run, a backfill
    beside "Fetch now") would both see a paper as new and both insert it, or
    both replace its tags. One lock for every paper writer, rather than one per
    day: a paper can be on more than one day's list, and its tags are written by
    ingest and retag alike. An ingest takes well under a second, so waiting costs
    nothing; the second writer then finds the first one's rows and only updates
    them. The embedded mode (SQLite) runs its tasks one at a time in one process.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [PAPER_WRITES_LOCK])


def _active_topics() -> list[Topic]:
    return list(Topic.objects.filter(is_active=True).order_by("slug"))


def _tag(papers: Sequence[Paper], topics: list[Topic] | None = None) -> int:
    """Replace the automatic tags of these papers; curator rows stay as they are."""
    if not papers:
        return 0
    topics = _active_topics() if topics is None else topics
    tagger = get_tagger(topics, current_analyzer())
    topic_ids = {topic.slug: topic.pk for topic in topics}
    paper_ids = [paper.pk for paper in papers]

    current: dict[tuple[int, int], PaperTopic] = {}
    for start in range(0, len(paper_ids), BATCH):
        for row in PaperTopic.objects.filter(paper_id__in=paper_ids[start : start + BATCH]):
            current[(row.paper_id, row.topic_id)] = row

    wanted: dict[tuple[int, int], tuple[float, list[str]]] = {}
    for paper in papers:
        for slug, score, phrases in tagger.tag_with_evidence(
            paper.title, paper.abstract, paper.ai_keywords or ()
        ):
            wanted[(paper.pk, topic_ids[slug])] = (score, list(phrases[:5]))

    to_create, to_update, to_delete = [], [], []
    for key, row in current.items():
        if row.set_by_curator:
            continue
        if key not in wanted:
            to_delete.append(row.pk)
        elif (row.score, row.evidence) != wanted[key]:
            row.score, row.evidence = wanted[key]
            to_update.append(row)
    for key, (score, evidence) in wanted.items():
        if key not in current:
            to_create.append(PaperTopic(paper_id=key[0], topic_id=key[1], score=score, evidence=evidence))
    for start in range(0, len(to_delete), BATCH):
        PaperTopic.objects.filter(pk__in=to_delete[start : start + BATCH]).delete()
    PaperTopic.objects.bulk_update(to_update, ["score", "evidence"], batch_size=BATCH)
    PaperTopic.objects.bulk_create(to_create, batch_size=BATCH)
    return len(papers)


def papers_retag(*, paper_ids: Iterable[int] | None = None) -> int:
    """Re-run automatic tagging, e.g. after topics' phrases were edited. None means every paper."""
    queryset = Paper.objects.only("pk", "title", "abstract", "ai_keywords")
    if paper_ids is not None:
        queryset = queryset.filter(pk__in=list(paper_ids))
    topics = _active_topics()
    count = 0
    with transaction.atomic():
        lock_paper_writes()
        batch: list[Paper] = []
        for paper in queryset.order_by("pk").iterator(chunk_size=BATCH):
            batch.append(paper)
            if len(batch) == BATCH:
                count += _tag(batch, topics)
                batch = []
        count += _tag(batch, topics)
    return count


def papers_fetch(*, day: date, source: str = SOURCE_HF_API, **fetch_options: Any) -> IngestResult:
    """Fetch one day from a source and ingest it whole.

    "hf" is the JSON API with the papers page as fallback: when the API fails
    the page is tried, and only when both fail is the API's error raised.
    """
    if source not in (SOURCE_HF_API, SOURCE_HF_PAGE, SOURCE_ARXIV):
        raise ValueError(f"unknown source {source!r}")
    source, records = sources.fetch_with_fallback(source, day, **fetch_options)
    result = papers_ingest(records=records)
    result.source = source
    if not records:
        result.notes.append(f"nothing new on {day.isoformat()}")
    return result


def papers_load_file(*, path: str | Path) -> IngestResult:
    """Ingest a saved HF API response, HF papers page or arXiv Atom feed; the format is detected."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SourceError("file", str(path), f"cannot read file ({exc.strerror})") from None
    if size > http.MAX_RESPONSE_BYTES:
        raise SourceError(
            "file", str(path), f"file of {size} bytes is over the {http.MAX_RESPONSE_BYTES}-byte cap"
        )
    return papers_load_text(text=path.read_bytes().decode("utf-8", errors="replace"), name=str(path))


def papers_load_text(*, text: str, name: str) -> IngestResult:
    """Ingest the text of a saved response (a file, or one uploaded in the admin), checked
    the same way as a fetched one; `name` says where it came from in errors."""
    source, records = sources.parse_saved(text, name=name)
    result = papers_ingest(records=records)
    result.source = source
    return result
