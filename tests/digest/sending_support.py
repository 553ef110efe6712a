"""Helpers shared by the single-message and batched sending tests."""

import re

from django.test import TestCase

from digest.feedback import read_feedback_token
from digest.models import DigestRun
from digest.tasks import nightly_run
from subscribers.tokens import read_manage_token, read_unsubscribe_token
from tests.digest.builders import EDITION, make_paper, make_reader


def make_readers(count: int = 12):
    """Readers who all get the same two-paper digest."""
    make_paper(1, topics={"reasoning": 0.9}, upvotes=30)
    make_paper(2, topics={"agents": 0.8}, upvotes=12)
    return [make_reader(f"r{i}@example.org", ["reasoning", "agents"]) for i in range(count)]


def run_night(**kwargs) -> DigestRun:
    """The whole night in-process. Send tasks are queued on commit, so inside a
    test's transaction the queued callbacks are run as the night would run them."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        run_id = nightly_run(EDITION.isoformat(), fetch=False, **kwargs)
    return DigestRun.objects.get(id=run_id)


def assert_each_once(esp, readers):
    """Every reader got exactly one valid message from the fake ESP."""
    counts = esp.state.recipients()
    assert {r.email for r in readers} == set(counts), counts
    assert set(counts.values()) == {1}
    assert esp.stats()["invalid"] == 0


def assert_links_are_the_readers(message, reader) -> str:
    """The message's unsubscribe, preference-centre and vote links are signed for this reader;
    returns the unsubscribe token."""
    unsubscribe = re.search(r"/unsubscribe/([^/\"<>\s]+)/", message.html).group(1)
    assert read_unsubscribe_token(unsubscribe).subscriber_id == reader.id
    manage = re.search(r"/manage/([^/\"<>\s]+)/", message.text).group(1)
    assert read_manage_token(manage).subscriber_id == reader.id
    votes = re.findall(r"/feedback/([^/\"<>\s]+)/up/", message.html)
    assert votes and all(read_feedback_token(token).subscriber_id == reader.id for token in votes)
    return unsubscribe


class WorkerDied(BaseException):
    """Stands in for SIGKILL: not an Exception, so no handler in the code catches it."""


class DyingConnection:
    """A backend connection whose process dies before its (die_after + 1)th ESP call."""

    def __init__(self, inner, die_after: int):
        self.inner = inner
        self.die_after = die_after
        self.calls = 0

    def open(self):
        return self.inner.open()

    def close(self):
        return self.inner.close()

    def send_messages(self, messages):
        if self.calls == self.die_after:
            raise WorkerDied()
        self.calls += 1
        return self.inner.send_messages(messages)
