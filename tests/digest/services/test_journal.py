"""The Redis send journal under many sender threads: every entry is written
before its thread goes on, and threads answered together share a write."""

import threading
import time
import uuid

import pytest
import redis

from digest.services.journal import JournalEntry, RedisJournal
from tests.digest.builders import EDITION

pytestmark = pytest.mark.services


class SlowRedis:
    """A real Redis client whose writes take `delay` seconds, as over a busy
    network; counts the round trips that write."""

    def __init__(self, url: str, delay: float):
        self.real = redis.Redis.from_url(url)
        self.delay = delay
        self.writes = 0
        self.fail_next = 0

    def _write(self):
        self.writes += 1
        time.sleep(self.delay)
        if self.fail_next:
            self.fail_next -= 1
            raise redis.ConnectionError("connection reset by peer")

    def hset(self, *args, **kwargs):
        self._write()
        return self.real.hset(*args, **kwargs)

    def pipeline(self, **kwargs):
        self._write()
        return self.real.pipeline(**kwargs)

    def hmget(self, *args, **kwargs):
        return self.real.hmget(*args, **kwargs)


def entries_for(call: int) -> dict[int, JournalEntry]:
    return {call * 10 + n: JournalEntry(f"<{call}.{n}@esp>", "Today's papers", [call, n]) for n in range(3)}


def journal_on(client: SlowRedis) -> RedisJournal:
    journal = RedisJournal(EDITION, client=client)
    journal.key = f"test-journal:{uuid.uuid4().hex}"
    return journal


def test_threads_answered_together_share_writes_and_each_goes_on_only_once_written(redis_url):
    client = SlowRedis(redis_url, delay=0.02)
    journal = journal_on(client)
    calls = 16
    start = threading.Barrier(calls)
    missing: list[int] = []

    def sender(call: int):
        entries = entries_for(call)
        start.wait()
        journal.record_many(entries)
        # Back from record_many: the entries must be in Redis already.
        found = journal.recorded(list(entries))
        if found != entries:
            missing.append(call)

    threads = [threading.Thread(target=sender, args=(call,)) for call in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert missing == []
        everything = {key: value for call in range(calls) for key, value in entries_for(call).items()}
        assert journal.recorded(list(everything)) == everything
        # One call's write goes out alone; the others, answered while it is out, share the next ones.
        assert 2 <= client.writes <= calls // 2
    finally:
        client.real.delete(journal.key)


def test_a_write_that_fails_fails_its_call_and_its_entries_go_out_with_the_next_write(redis_url, monkeypatch):
    client = SlowRedis(redis_url, delay=0)
    journal = journal_on(client)

    def database_down(entries):
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(journal.fallback, "record_many", database_down)
    client.fail_next = 1
    try:
        with pytest.raises(RuntimeError, match="database unavailable"):
            journal.record_many(entries_for(1))
        assert journal.recorded(list(entries_for(1))) == {}
        journal.record_many(entries_for(2))
        both = {**entries_for(1), **entries_for(2)}
        assert journal.recorded(list(both)) == both
    finally:
        client.real.delete(journal.key)


def test_a_lone_call_is_written_at_once(redis_url):
    client = SlowRedis(redis_url, delay=0)
    journal = journal_on(client)
    try:
        for call in range(3):
            journal.record_many(entries_for(call))
            assert journal.recorded(list(entries_for(call))) == entries_for(call)
        assert client.writes == 3
        assert client.real.ttl(journal.key) > 0  # the first write set the expiry
    finally:
        client.real.delete(journal.key)
