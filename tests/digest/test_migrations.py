"""The data migrations that revise shipped phrases and aliases on installs that already have them."""

from importlib import import_module

import pytest
from django.apps import apps as django_apps

from digest.models import TermAlias, TermStat, Topic
from digest.tagging.taxonomy import DEFAULT_TOPICS
from tests.digest.builders import make_paper

pytestmark = pytest.mark.django_db

revision = import_module("digest.migrations.0009_revised_phrases_aliases_and_term_counts")


def test_unedited_topics_take_the_revised_phrases_and_edited_ones_keep_theirs(monkeypatch):
    monkeypatch.setattr(
        revision,
        "SHIPPED_IN_0007",
        {"efficiency": revision._digest("as shipped"), "video": revision._digest("x")},
    )
    Topic.objects.filter(slug="efficiency").update(phrases="as shipped")
    Topic.objects.filter(slug="video").update(phrases="an admin's own phrases")
    revision.refresh_default_phrases(django_apps, None)
    shipped = {topic["slug"]: "\n".join(topic["phrases"]) for topic in DEFAULT_TOPICS}
    assert Topic.objects.get(slug="efficiency").phrases == shipped["efficiency"]
    assert Topic.objects.get(slug="video").phrases == "an admin's own phrases"


def test_new_synonyms_arrive_once_and_the_archive_is_recounted_with_them():
    TermAlias.objects.filter(term__in=revision.NEW_ALIASES).delete()
    TermAlias.objects.create(term="gui agent", expansions="an admin's own wording")
    make_paper(1, topics={}, title="Clinical notes", abstract="Clinical decision support.")
    revision.seed_new_aliases(django_apps, None)
    revision.seed_new_aliases(django_apps, None)
    assert set(TermAlias.objects.filter(term__in=revision.NEW_ALIASES).values_list("term", flat=True)) == {
        "medical", "efficient inference", "diffusion language model"
    }  # fmt: skip
    assert TermAlias.objects.get(term="gui agent").expansions == "an admin's own wording"
    revision.recount_terms(django_apps, None)
    # "clinical" is now read as "medical": one paper has it, and no stored count says "clinic".
    assert TermStat.objects.get(term="medic").papers == 1
    assert not TermStat.objects.filter(term="clinic").exists()
