import hashlib

from django.db import migrations

# sha256 (first 16 hex digits) of each default topic's phrases as first shipped.
# A topic whose phrases still hash to this was never edited in the admin, so it
# takes the revised phrases; edited topics are left as their admins made them.
FIRST_SHIPPED = {
    "reasoning": "18f72f15e6471743",
    "instruction-tuning": "97cfab8d341c4179",
    "alignment": "b79dd2094c9a9bc4",
    "reinforcement-learning": "4616f12e229371f6",
    "efficiency": "630873540f8ceb13",
    "architectures": "4e520292601542d5",
    "multimodal": "fdacc02300000da9",
    "image-generation": "dff4bf2340417629",
    "video": "d05327d62859e8b4",
    "audio-speech": "e73358042da10f7b",
    "code": "6edf20905afa06eb",
    "agents": "2c91c0b82f05ed10",
    "retrieval-search": "724dfea831351e40",
    "evaluation": "5cc8fe04a819d820",
    "safety": "d6c3b46d0faa0d87",
    "data": "a118c85c07da1b2a",
    "long-context": "45911afc6afd7022",
    "multilingual": "dad3da4f3c1ee05c",
    "robotics": "e93d288f611fe19f",
    "3d": "47c11cf6530eeacf",
    "science-health": "e9182b729a82abcd",
    "interpretability": "c5846f096c87c0c2",
}


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def seed_aliases(apps, schema_editor):
    from digest.tagging.taxonomy import DEFAULT_ALIASES

    TermAlias = apps.get_model("digest", "TermAlias")
    existing = set(TermAlias.objects.values_list("term", flat=True))
    TermAlias.objects.bulk_create(
        TermAlias(term=row["term"], expansions="\n".join(row["expansions"]))
        for row in DEFAULT_ALIASES
        if row["term"] not in existing
    )


def refresh_default_phrases(apps, schema_editor):
    from digest.tagging.taxonomy import DEFAULT_TOPICS

    Topic = apps.get_model("digest", "Topic")
    shipped = {topic["slug"]: "\n".join(topic["phrases"]) for topic in DEFAULT_TOPICS}
    for topic in Topic.objects.filter(slug__in=list(shipped)):
        if FIRST_SHIPPED.get(topic.slug) == _digest(topic.phrases.replace("\r\n", "\n")):
            topic.phrases = shipped[topic.slug]
            topic.save(update_fields=["phrases"])


def count_terms(apps, schema_editor):
    """Document frequencies of the papers already stored (ingest keeps them from now on)."""
    from digest.tagging.analysis import default_analyzer

    count_terms_with(apps, default_analyzer())


def count_terms_with(apps, analyzer):
    """Recount every stored paper's terms as this analyser reads them (later migrations use it too)."""
    from collections import Counter

    from digest.tagging.analysis import FIELDS, field_terms

    Paper = apps.get_model("digest", "Paper")
    TermStat = apps.get_model("digest", "TermStat")
    CorpusStat = apps.get_model("digest", "CorpusStat")
    df: Counter = Counter()
    words: Counter = Counter()
    papers = 0
    for paper in Paper.objects.only("title", "ai_summary", "ai_keywords", "abstract").iterator(
        chunk_size=1000
    ):
        texts = {
            "title": paper.title,
            "summary": paper.ai_summary,
            "keywords": " | ".join(str(k) for k in (paper.ai_keywords or [])),
            "abstract": paper.abstract,
        }
        terms = field_terms(analyzer, texts)
        papers += 1
        df.update({term for values in terms.values() for term in values})
        for name in FIELDS:
            words[name] += len(terms[name])
    CorpusStat.objects.update_or_create(
        pk=1, defaults={"papers": papers, **{f"{name}_words": words[name] for name in FIELDS}}
    )
    TermStat.objects.all().delete()
    TermStat.objects.bulk_create((TermStat(term=term, papers=n) for term, n in df.items()), batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("digest", "0006_relevance_models")]

    operations = [
        migrations.RunPython(seed_aliases, migrations.RunPython.noop),
        migrations.RunPython(refresh_default_phrases, migrations.RunPython.noop),
        migrations.RunPython(count_terms, migrations.RunPython.noop),
    ]
