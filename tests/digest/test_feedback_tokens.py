"""👍/👎 links are django.core.signing signatures: they follow key rotation like every other link."""

import base64
import hashlib
import hmac

import pytest

from digest.feedback import (
    FeedbackTarget,
    InvalidFeedbackToken,
    make_feedback_token,
    make_feedback_tokens,
    read_feedback_token,
)
from subscribers.tokens import make_manage_token, read_manage_token

OLD_KEY = "the-key-digests-were-signed-with-last-year-0123456789"
NEW_KEY = "the-key-in-use-since-the-rotation-abcdefghijklmnopqrs"


def legacy_token(secret: str, subscriber_id: int, paper_id: int, version: int) -> str:
    """A link exactly as digests carried it before feedback links used django.core.signing."""
    body = f"{subscriber_id:x}.{paper_id:x}.{version:x}"
    key = hashlib.sha256(b"paperboy.digest.feedback" + secret.encode()).digest()
    signature = base64.urlsafe_b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest()[:12])
    return f"{body}.{signature.decode().rstrip('=')}"


def test_round_trip(settings):
    token = make_feedback_token(12345, 678, 3)
    assert read_feedback_token(token) == FeedbackTarget(subscriber_id=12345, paper_id=678, token_version=3)


def test_a_digests_tokens_signed_together_are_the_ones_signed_one_by_one(settings):
    papers = [1, 61, 62, 3843, 238328, 5]
    assert make_feedback_tokens(12345, papers, 3) == [make_feedback_token(12345, p, 3) for p in papers]
    assert [read_feedback_token(t).paper_id for t in make_feedback_tokens(7, papers, 0)] == papers


def test_old_vote_links_keep_working_after_a_key_rotation_like_manage_links(settings):
    settings.SECRET_KEY = OLD_KEY
    vote, manage = make_feedback_token(7, 9, 1), make_manage_token(7, 1)
    settings.SECRET_KEY = NEW_KEY
    settings.SECRET_KEY_FALLBACKS = [OLD_KEY]
    assert read_manage_token(manage).subscriber_id == 7
    assert read_feedback_token(vote) == FeedbackTarget(subscriber_id=7, paper_id=9, token_version=1)
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(InvalidFeedbackToken):
        read_feedback_token(vote)


@pytest.mark.parametrize("signed_with", [NEW_KEY, OLD_KEY])
def test_links_in_digests_sent_before_the_switch_still_work(settings, signed_with):
    settings.SECRET_KEY = NEW_KEY
    settings.SECRET_KEY_FALLBACKS = [OLD_KEY]
    token = legacy_token(signed_with, 7, 9, 1)
    assert read_feedback_token(token) == FeedbackTarget(subscriber_id=7, paper_id=9, token_version=1)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: t.replace("-", "_", 1),
        lambda t: t + ".x",
        lambda t: t.split(".")[0],
    ],
)
def test_tampered_links_are_refused(settings, mangle):
    with pytest.raises(InvalidFeedbackToken):
        read_feedback_token(mangle(make_feedback_token(7, 9, 1)))


def test_a_legacy_link_signed_with_an_unknown_key_is_refused(settings):
    settings.SECRET_KEY = NEW_KEY
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(InvalidFeedbackToken):
        read_feedback_token(legacy_token("someone-elses-key", 7, 9, 1))


def test_a_token_for_another_purpose_is_refused(settings):
    with pytest.raises(InvalidFeedbackToken):
        read_feedback_token(make_manage_token(7, 1))


def test_a_changed_secret_key_signs_with_the_new_key(settings):
    token = make_feedback_token(7, 8, 1)
    settings.SECRET_KEY = "another secret key for this test only 0123456789abcdef"
    assert make_feedback_token(7, 8, 1) != token
    settings.SECRET_KEY_FALLBACKS = [*settings.SECRET_KEY_FALLBACKS, "x"]
    with pytest.raises(InvalidFeedbackToken):
        read_feedback_token(token)
