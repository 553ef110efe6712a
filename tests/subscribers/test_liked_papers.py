"""Papers a reader likes, pasted as arXiv ids or links at signup and in the preference centre."""

import pytest

from subscribers.models import Subscriber
from tests.subscribers.factories import SubscriberFactory
from tests.subscribers.test_manage import manage_path, prefs
from tests.subscribers.test_signup import SIGNUP, form

pytestmark = pytest.mark.django_db


def test_signup_stores_liked_papers_as_bare_ids(client, commit):
    pasted = (
        "https://arxiv.org/abs/2401.01234v2, arXiv:2312.00001\n"
        + "https://huggingface.co/papers/2505.12345 2401.01234"
    )
    with commit():
        response = client.post(SIGNUP, form(liked_papers=pasted))
    assert response.status_code == 302
    assert Subscriber.objects.get().liked_papers == ["2401.01234", "2312.00001", "2505.12345"]


@pytest.mark.parametrize(
    ("pasted", "message"),
    [
        ("2401.01234, not-a-paper", "Not an arXiv id or link: “not-a-paper”"),
        ("https://example.org/abs/2401.01234", "Not an arXiv id or link"),
        ("javascript:alert(1)", "Not an arXiv id or link"),
        (" ".join(f"2401.{n:05d}" for n in range(51)), "at most 50 papers"),
    ],
)
def test_garbage_liked_papers_are_a_clear_error_and_nothing_is_stored(client, commit, pasted, message):
    with commit():
        response = client.post(SIGNUP, form(liked_papers=pasted))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Subscriber.objects.exists()


def test_preference_centre_edits_liked_papers_and_the_trending_section(client, commit):
    reader = SubscriberFactory(status=Subscriber.Status.ACTIVE, topics=["video"], liked_papers=["2401.01234"])
    page = client.get(manage_path(reader)).content.decode()
    assert "2401.01234" in page and "Also trending" in page
    with commit():
        response = client.post(manage_path(reader), prefs(liked_papers="https://arxiv.org/pdf/2402.00002v1"))
    assert response.status_code == 302
    reader.refresh_from_db()
    assert reader.liked_papers == ["2402.00002"]
    assert reader.show_trending is False  # an unticked box turns the section off


def test_bad_liked_papers_in_the_preference_centre_change_nothing(client, commit):
    reader = SubscriberFactory(status=Subscriber.Status.ACTIVE, topics=["video"], liked_papers=["2401.01234"])
    with commit():
        response = client.post(manage_path(reader), prefs(liked_papers="2401.01234 ???", interests="changed"))
    assert response.status_code == 400
    assert "Not an arXiv id or link: “???”" in response.content.decode()
    reader.refresh_from_db()
    assert reader.liked_papers == ["2401.01234"] and reader.interests != "changed"
