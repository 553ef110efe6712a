"""Following arXiv categories and authors: the signup form, the preference centre, the
services and the model all take good lists and refuse bad ones without writing anything."""

import pytest
from django.core.exceptions import ValidationError

from digest.sources.arxiv_categories import CATEGORIES
from subscribers import services
from subscribers.follows import MAX_CATEGORIES, clean_arxiv_categories, clean_author_names
from subscribers.models import Subscriber
from tests.subscribers.factories import SubscriberFactory
from tests.subscribers.test_manage import assert_refused_without_change, manage_path, prefs
from tests.subscribers.test_signup import SIGNUP, form

pytestmark = pytest.mark.django_db

LONG_NAME = "Ada " + "L" * 296  # 300 characters


def test_categories_are_cleaned_to_arxivs_spelling_once_each():
    assert clean_arxiv_categories(["cs.ro", " STAT.ML ", "cs.RO", "eess.as", "q-bio.NC", "hep-th"]) == [
        "cs.RO",
        "stat.ML",
        "eess.AS",
        "q-bio.NC",
        "hep-th",
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["cs.RO", "cs.FOO"], "Not an arXiv category: “cs.FOO”"),
        (["robotics"], "Not an arXiv category: “robotics”"),
        ("cs.RO", "must be a list"),
        ([["cs.RO"]], "must be a list"),
        (
            sorted(code for code in CATEGORIES if code.startswith("cs."))[:21],
            "at most",
        ),
    ],
)
def test_bad_category_lists_are_refused_with_a_message(values, message):
    with pytest.raises(ValidationError, match=message):
        clean_arxiv_categories(values)
    assert MAX_CATEGORIES == 20


def test_author_names_are_tidied_and_deduplicated_ignoring_case_and_accents():
    assert clean_author_names(
        ["  Yoshua   Bengio ", "yoshua bengio", "José Núñez", "Jose Nunez", "Bengio, Y."]
    ) == [
        "Yoshua Bengio",
        "José Núñez",
        "Bengio, Y.",
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([LONG_NAME], "under 100 characters \\(one was 300 characters long\\)"),
        (["Ada\x00 Lovelace"], "control characters"),
        (["12345"], "has no letters"),
        ("Ada Lovelace", "must be a list"),
        ([f"Author{chr(97 + i // 26)}{chr(97 + i % 26)} Smith" for i in range(31)], "at most 30"),
    ],
)
def test_bad_author_lists_are_refused_with_a_message(values, message):
    with pytest.raises(ValidationError, match=message):
        clean_author_names(values)


# --- The signup form --------------------------------------------------------------------


def test_signup_stores_followed_categories_and_authors(client, commit):
    # The outbox worker applies the stored signup once the request's transaction commits.
    with commit():
        response = client.post(
            SIGNUP,
            form(
                arxiv_categories="cs.ro, stat.ML  eess.AS",
                followed_authors="Yoshua Bengio\nBengio, Samy; Ada Lovelace",
            ),
        )
    assert response.status_code == 302
    subscriber = Subscriber.objects.get()
    assert subscriber.arxiv_categories == ["cs.RO", "stat.ML", "eess.AS"]
    assert subscriber.followed_authors == ["Yoshua Bengio", "Bengio, Samy", "Ada Lovelace"]


def test_following_only_a_category_is_enough_to_sign_up(client, commit):
    with commit():
        response = client.post(SIGNUP, form(topics=None, interests="", arxiv_categories="cs.RO"))
    assert response.status_code == 302
    assert Subscriber.objects.get().arxiv_categories == ["cs.RO"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"arxiv_categories": "cs.RO, cs.NOPE"}, "Not an arXiv category: “cs.NOPE”"),
        ({"followed_authors": LONG_NAME}, "Keep each author name under 100 characters"),
    ],
)
def test_signup_with_bad_follows_shows_the_error_and_stores_nothing(client, overrides, message):
    response = client.post(SIGNUP, form(**overrides))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert 'aria-invalid="true"' in response.content.decode()
    assert not Subscriber.objects.exists()


def test_signup_page_has_both_fields(client):
    html = client.get(SIGNUP).content.decode()
    assert 'name="arxiv_categories"' in html and 'name="followed_authors"' in html


# --- The preference centre ---------------------------------------------------------------


def test_preference_centre_shows_and_saves_follows(client, active):
    active.arxiv_categories = ["cs.RO", "stat.ML"]
    active.followed_authors = ["Grace Hopper", "Ada Lovelace"]
    active.save()
    html = client.get(manage_path(active)).content.decode()
    # Categories on one line, authors one per line.
    assert 'value="cs.RO, stat.ML"' in html and ">Grace Hopper\nAda Lovelace</textarea>" in html

    response = client.post(
        manage_path(active), prefs(arxiv_categories="eess.as q-bio.NC", followed_authors="Y. Bengio")
    )
    assert response.status_code == 302
    active.refresh_from_db()
    assert active.arxiv_categories == ["eess.AS", "q-bio.NC"]
    assert active.followed_authors == ["Y. Bengio"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"arxiv_categories": "cs.RO, physics.magic"}, "Not an arXiv category: “physics.magic”"),
        ({"followed_authors": f"Grace Hopper\n{LONG_NAME}"}, "under 100 characters"),
        ({"arxiv_categories": "cs.RO " * 67}, "at most 400 characters"),
        ({"followed_authors": "Grace Hopper\n" * 250}, "at most 3000 characters"),
    ],
)
def test_preference_centre_refuses_bad_follows_and_changes_nothing(client, active, overrides, message):
    active.arxiv_categories = ["cs.RO"]
    active.save()
    assert_refused_without_change(client, active, prefs(**overrides), message)


# --- The services and the model ----------------------------------------------------------


def _signup(**follows):
    return services.subscriber_signup(
        email="ada@example.org",
        topics=[],
        interests="protein folding",
        frequency="daily",
        weekday=0,
        ip=None,
        user_agent=None,
        **follows,
    )


@pytest.mark.parametrize(
    ("follows", "message"),
    [
        ({"arxiv_categories": ["cs.XX"]}, "Not an arXiv category"),
        ({"followed_authors": [LONG_NAME]}, "under 100 characters"),
    ],
)
def test_signup_service_refuses_bad_follows_before_writing(
    follows, message, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValidationError, match=message):
        _signup(**follows)
    assert not Subscriber.objects.exists()
    assert callbacks == []  # no confirmation email queued


def test_update_service_refuses_bad_follows_and_changes_nothing(active):
    before = Subscriber.objects.values().get(pk=active.pk)
    with pytest.raises(ValidationError, match="Not an arXiv category"):
        services.subscriber_update_preferences(
            subscriber=active,
            topics=[],
            interests="something else",
            frequency="weekly",
            weekday=3,
            arxiv_categories=["cs.RO", "nonsense"],
        )
    assert Subscriber.objects.values().get(pk=active.pk) == before
    assert active.topics.count() == 2


def test_update_service_keeps_follows_it_was_not_given(active):
    active.arxiv_categories, active.followed_authors = ["cs.RO"], ["Grace Hopper"]
    active.save()
    services.subscriber_update_preferences(
        subscriber=active, topics=[], interests="x", frequency="daily", weekday=0
    )
    active.refresh_from_db()
    assert (active.arxiv_categories, active.followed_authors) == (["cs.RO"], ["Grace Hopper"])


def test_admin_add_service_validates_follows():
    with pytest.raises(ValidationError, match="Not an arXiv category"):
        services.subscriber_add(email="x@example.org", topics=[], arxiv_categories=["cs.nope"])
    assert not Subscriber.objects.exists()
    added = services.subscriber_add(
        email="y@example.org", topics=[], arxiv_categories=["cs.lg"], followed_authors=["Alan Turing"]
    )
    assert (added.arxiv_categories, added.followed_authors) == (["cs.LG"], ["Alan Turing"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("arxiv_categories", ["cs.FOO"], "Not an arXiv category"),
        ("arxiv_categories", ["cs.ro"], "as arXiv writes it"),
        ("followed_authors", [LONG_NAME], "under 100 characters"),
        ("followed_authors", "Ada Lovelace", "must be a list"),
    ],
)
def test_model_validation_refuses_what_the_admin_could_type(field, value, message):
    subscriber = SubscriberFactory.build(email="m@example.org", **{field: value})
    with pytest.raises(ValidationError, match=message) as caught:
        subscriber.full_clean()
    assert field in caught.value.message_dict


def test_export_includes_follows_and_pause_record(active):
    active.arxiv_categories, active.followed_authors = ["cs.RO"], ["Grace Hopper"]
    active.save()
    services.subscriber_pause(subscriber=active)
    services.subscriber_resume(subscriber=active)
    data = services.subscriber_export(subscriber=active)
    assert data["arxiv_categories"] == ["cs.RO"] and data["followed_authors"] == ["Grace Hopper"]
    assert data["paused_at"] and data["resumed_at"]
