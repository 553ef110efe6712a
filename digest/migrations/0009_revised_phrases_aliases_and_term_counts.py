import hashlib
from importlib import import_module

from django.db import migrations

# sha256 (first 16 hex digits) of the phrases migration 0007 gave the default topics
# revised since. A topic whose phrases still hash to this was not edited in the
# admin, so it takes the revised phrases; edited topics are left as their admins made them.
SHIPPED_IN_0007 = {
    "reinforcement-learning": "4616f12e229371f6",
    "efficiency": "d79ad9c5354bcb91",
    "multimodal": "46c410dcbf5d9d59",
    "video": "8cd8b67bcbce0768",
}
# Synonyms added to the default alias map since 0007.
NEW_ALIASES = ("medical", "efficient inference", "diffusion language model", "GUI agent")


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def refresh_default_phrases(apps, schema_editor):
    from digest.tagging.taxonomy import DEFAULT_TOPICS

    Topic = apps.get_model("digest", "Topic")
    shipped = {topic["slug"]: "\n".join(topic["phrases"]) for topic in DEFAULT_TOPICS}
    for topic in Topic.objects.filter(slug__in=list(SHIPPED_IN_0007)):
        if SHIPPED_IN_0007[topic.slug] == _digest(topic.phrases.replace("\r\n", "\n")):
            topic.phrases = shipped[topic.slug]
            topic.save(update_fields=["phrases"])


def seed_new_aliases(apps, schema_editor):
    from digest.tagging.taxonomy import DEFAULT_ALIASES

    TermAlias = apps.get_model("digest", "TermAlias")
    existing = {term.lower() for term in TermAlias.objects.values_list("term", flat=True)}
    TermAlias.objects.bulk_create(
        TermAlias(term=row["term"], expansions="\n".join(row["expansions"]))
        for row in DEFAULT_ALIASES
        if row["term"] in NEW_ALIASES and row["term"].lower() not in existing
    )


def recount_terms(apps, schema_editor):
    """The analyser now reads some words differently (new synonyms, protected words): recount the
    archive's term statistics with the aliases as stored."""
    from digest.tagging.analysis import Analyzer, parse_aliases

    TermAlias = apps.get_model("digest", "TermAlias")
    rows = TermAlias.objects.filter(is_active=True).order_by("term").values_list("term", "expansions")
    counting = import_module("digest.migrations.0007_seed_aliases_and_corpus_stats")
    counting.count_terms_with(apps, Analyzer(parse_aliases(rows)))


class Migration(migrations.Migration):
    dependencies = [("digest", "0008_inflight_uncertain_leases")]

    operations = [
        migrations.RunPython(refresh_default_phrases, migrations.RunPython.noop),
        migrations.RunPython(seed_new_aliases, migrations.RunPython.noop),
        migrations.RunPython(recount_terms, migrations.RunPython.noop),
    ]
