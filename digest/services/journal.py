"""A per-message record of what the ESP accepted, written right after it accepts.

Deliveries are written back to the database once per chunk, in bulk. If a
worker dies between those writes, the journal still knows which messages the
ESP took, so whoever takes the chunk over marks them sent instead of sending
them again. A row is marked in flight before its call, so the one window left,
between the ESP's answer and the journal write, is not resolved by guessing:
the ESP's own message search (Postmark) or DIGEST_UNCERTAIN decides.

With Redis configured the journal is a Redis hash per edition, written by
the sender threads as their calls are answered, no database query. The
threads of a chunk commit as a group: a thread whose answer arrives while
another thread's write is out adds its entries to the next write, which
carries every entry that came in meanwhile, so a chunk with many calls in
flight makes far fewer round trips than it has calls. No thread goes on
before a write holding its entries has returned. In the embedded mode the
journal writes the delivery rows instead, from the chunk's own thread as each
answer arrives.
"""

import json
import threading
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from digest.models import Delivery
from mail.ratelimit import shared_redis

JOURNAL_TTL_SECONDS = 3 * 24 * 3600


class JournalEntry(NamedTuple):
    message_id: str
    subject: str
    paper_ids: list[int]


class DatabaseJournal:
    # Writes go through this thread's database connection: the chunk records
    # from its main thread as each call's outcome arrives.
    thread_safe = False

    def __init__(self, edition):
        self.edition = edition

    def recorded(self, delivery_ids: list[int]) -> dict[int, "JournalEntry"]:
        return {}  # record() already wrote the row itself

    def record(self, delivery_id: int, message_id: str, subject: str, paper_ids: list[int]) -> None:
        Delivery.objects.filter(id=delivery_id).update(
            status=Delivery.Status.SENT,
            esp_message_id=message_id,
            sent_at=timezone.now(),
            subject=subject,
            paper_ids=paper_ids,
            error="",
        )

    def record_many(self, entries: dict[int, "JournalEntry"]) -> None:
        with transaction.atomic():
            for delivery_id, entry in entries.items():
                self.record(delivery_id, *entry)


class RedisJournal:
    # redis-py clients are thread-safe: each sender records as its call is answered.
    thread_safe = True

    def __init__(self, edition, client=None):

        self.key = f"{settings.CACHES['default'].get('KEY_PREFIX', 'paperboy')}:sent:{edition.isoformat()}"
        self.client = client or shared_redis()
        self.fallback = DatabaseJournal(edition)
        self.expiry_set = False
        # Group commit: entries wait in `_pending` (guarded by `_guard`) for the
        # next write; `_writing` lets one write out at a time. Entries are
        # numbered as they arrive; `_durable` is the highest number a finished
        # write carried.
        self._guard = threading.Lock()
        self._writing = threading.Lock()
        self._pending: dict[int, JournalEntry] = {}
        self._arrived = 0
        self._durable = 0

    def recorded(self, delivery_ids: list[int]) -> dict[int, "JournalEntry"]:
        if not delivery_ids:
            return {}
        values = self.client.hmget(self.key, [str(i) for i in delivery_ids])
        found = {}
        for delivery_id, value in zip(delivery_ids, values, strict=True):
            if value is not None:
                message_id, subject, paper_ids = json.loads(value)
                found[delivery_id] = JournalEntry(message_id, subject, paper_ids)
        return found

    def record_many(self, entries: dict[int, "JournalEntry"]) -> None:
        """Record a call's entries; returns once a write holding them is done
        (in Redis, or in the database when Redis is away)."""
        if not entries:
            return
        with self._guard:
            self._pending.update(entries)
            self._arrived += 1
            mine = self._arrived
        with self._writing:
            with self._guard:
                if self._durable >= mine:
                    return  # the write that just finished carried them
                batch, self._pending = self._pending, {}
                carried = self._arrived
            try:
                self._write(batch)
            except BaseException:
                # Not written: the entries wait for the next write (the threads
                # that brought them make it), and this thread's call fails.
                with self._guard:
                    self._pending = {**batch, **self._pending}
                raise
            with self._guard:
                self._durable = carried

    def _write(self, entries: dict[int, "JournalEntry"]) -> None:
        """One round trip: HSET of every field (and the EXPIRE, on the first write)."""
        import redis

        mapping = {
            str(delivery_id): json.dumps([entry.message_id, entry.subject, entry.paper_ids])
            for delivery_id, entry in entries.items()
        }
        try:
            if self.expiry_set:
                self.client.hset(self.key, mapping=mapping)
            else:
                pipe = self.client.pipeline(transaction=False)
                pipe.hset(self.key, mapping=mapping)
                pipe.expire(self.key, JOURNAL_TTL_SECONDS)
                pipe.execute()
                self.expiry_set = True
        except redis.RedisError:
            # Redis is away: write the rows now rather than lose the fact.
            self.fallback.record_many(entries)


def journal_for(edition):
    return RedisJournal(edition) if settings.REDIS_URL else DatabaseJournal(edition)
