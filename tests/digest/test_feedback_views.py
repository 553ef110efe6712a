import pytest
from django.test import Client

from digest.compose import DigestComposer, Reader, build_preferences
from digest.feedback import make_feedback_token
from digest.models import Feedback
from digest.selectors import load_affinities
from subscribers.models import Subscriber
from tests.digest.builders import EDITION, YESTERDAY, make_paper, make_reader

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    paper = make_paper(1, topics={"video": 0.9}, title="Video diffusion at scale")
    ada = make_reader("ada@example.org", ["video"])
    return ada, paper, make_feedback_token(ada.id, paper.id, ada.token_version)


def test_get_shows_the_paper_and_records_nothing(client, setup):
    *_, token = setup
    response = client.get(f"/feedback/{token}/up/")
    assert response.status_code == 200
    assert b"Video diffusion at scale" in response.content
    assert b'<form method="post">' in response.content
    assert Feedback.objects.count() == 0
    # The title is a link to the paper, not a bare arXiv id.
    assert (
        b'<a href="https://huggingface.co/papers/2611.00001">Video diffusion at scale</a>' in response.content
    )


def test_post_records_the_vote_and_changing_it_keeps_one_row(setup):
    *_, token = setup
    client = Client(enforce_csrf_checks=True)
    page = client.get(f"/feedback/{token}/up/")
    csrf = page.cookies["csrftoken"].value
    response = client.post(f"/feedback/{token}/up/", {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 200
    assert b"Thanks, noted" in response.content
    assert Feedback.objects.get().vote == 1
    client.post(f"/feedback/{token}/down/", {"csrfmiddlewaretoken": csrf})
    assert list(Feedback.objects.values_list("vote", flat=True)) == [-1]


@pytest.mark.parametrize(
    "suffix", ["garbage/up/", "{token}x/up/", "{token}/sideways/", "{token}%C3%A9/up/", "a.b.c.%C3%A9/up/"]
)
def test_bad_links_get_a_friendly_400_and_record_nothing(client, setup, suffix):
    _, _, token = setup
    response = client.post(f"/feedback/{suffix.format(token=token)}")
    assert response.status_code == 400
    assert b"This link does not work" in response.content
    assert Feedback.objects.count() == 0


def test_tokens_with_non_ascii_characters_are_refused_not_a_server_error(setup):
    from digest.feedback import InvalidFeedbackToken, read_feedback_token

    _, _, token = setup
    body, signature = token.rsplit(".", 1)
    with pytest.raises(InvalidFeedbackToken):
        read_feedback_token(f"{body}.{signature[:-1]}é")


def test_revoked_links_stop_working(client, setup):
    ada, _, token = setup
    Subscriber.objects.filter(id=ada.id).update(token_version=2)
    assert client.post(f"/feedback/{token}/up/").status_code == 400
    assert Feedback.objects.count() == 0


def test_downvotes_push_a_topic_down_in_the_next_digest(setup):
    ada, video_paper, _ = setup
    code_paper = make_paper(2, topics={"code": 0.75}, title="Code models")

    def first_paper(affinity):
        reader = Reader(
            subscriber_id=ada.id,
            email=ada.email,
            token_version=1,
            preferences=build_preferences(
                topics=["video", "code"], interests="", digest_size=8, affinity=affinity
            ),
            window_start=YESTERDAY,
        )
        return DigestComposer.for_edition(EDITION).ranked_for(reader)[0].paper_id

    assert first_paper(None) == video_paper.id
    for n in range(3, 6):
        Feedback.objects.create(
            subscriber=ada, paper=make_paper(n, topics={"video": 1.0}, day=EDITION), vote=-1
        )
    affinity = load_affinities([ada.id])[ada.id]
    assert affinity.as_dict()["video"] < 0
    assert first_paper(affinity) == code_paper.id
