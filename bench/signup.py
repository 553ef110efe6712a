"""
Load the signup endpoint at a fixed request rate and report latency. Prints one JSON object.

    .venv/bin/python bench/signup.py                          # 200 requests/s for 20 s
    .venv/bin/python bench/signup.py --rate 300 --seconds 30 --gunicorn-workers 3
    .venv/bin/python bench/signup.py --enumeration            # can timing tell who is subscribed?

With --enumeration it instead seeds pending, active, paused, unsubscribed and
suppressed subscribers and posts signups for them and for new addresses, one
request at a time in a shuffled order over real HTTP, and reports per class the
median latency and, for every pair of classes, the AUC of telling them apart by
latency (0.5: not at all; 1.0: always). It also checks that every answer is the
same redirect.

The server is gunicorn on PostgreSQL (its own database, `bench_signup`) with
Redis DB 5 as the Celery broker and no worker, so each signup is stored in the
email outbox and a drain task queued, as in production before a worker sends
it. The per-IP signup limit is off (SIGNUP_RATE_LIMIT=""), as every request
comes from 127.0.0.1.

The load generator is open-loop and bounded: requests start on a fixed
schedule whatever the server is doing (at most --max-in-flight at once), and
each latency is measured from its scheduled start, so a stalled server shows
up in the percentiles instead of slowing the generator down. Every request is
a real form POST with the CSRF cookie and token and a new address; a 302 to
the "check your inbox" page counts as success, anything else as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import random
import re
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlencode

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    DEFAULT_POSTGRES,
    DEFAULT_REDIS,
    ROOT,
    app_environment,
    create_database,
    database_url,
    free_port,
    machine,
    migrate,
    print_result,
    release_database,
    setup_django,
    stop_process,
    wait_until,
)


def csrf_pair(base: str) -> tuple[str, str]:
    """The CSRF cookie and a form token from a GET of the signup page."""
    with urllib.request.urlopen(base + "/", timeout=10) as response:  # noqa: S310 (loopback http only)
        page = response.read().decode()
        cookie = next(
            header.split(";")[0].split("=", 1)[1]
            for header in response.headers.get_all("Set-Cookie")
            if header.startswith("csrftoken=")
        )
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    return cookie, token


def request_bytes(port: int, cookie: str, token: str, topics: list[str], index: int, run: str) -> bytes:
    fields = [
        ("csrfmiddlewaretoken", token),
        ("email", f"signup-{run}-{index}@example.org"),
        *[("topics", topic) for topic in topics[index % 2 :]],
        ("interests", "speculative decoding, world models" if index % 10 == 0 else ""),
        ("frequency", "weekly" if index % 5 == 0 else "daily"),
        ("weekday", "2"),
    ]
    return form_post(port, cookie, fields)


def form_post(port: int, cookie: str, fields: list[tuple[str, str]]) -> bytes:
    """A complete HTTP/1.1 form POST to the signup page, closing the connection after the answer."""
    body = urlencode(fields).encode()
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: paperboy-bench\r\n"
        f"Cookie: csrftoken={cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + body


async def one(port: int, payload: bytes, timeout: float) -> int:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(payload)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        await asyncio.wait_for(reader.read(), timeout)  # the server closes after the answer
        return int(status_line.split()[1])
    finally:
        writer.close()


async def drive(*, port: int, rate: float, seconds: float, warmup: float, max_in_flight: int, payloads):
    """Start requests on a fixed schedule; returns (latencies of measured requests, errors, statuses)."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    in_flight = asyncio.Semaphore(max_in_flight)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    total = int((warmup + seconds) * rate)
    warm = int(warmup * rate)
    tasks = []

    async def fire(index: int, scheduled: float):
        async with in_flight:
            try:
                status = await one(port, payloads(index), timeout=10)
                outcome = None if status == 302 else f"http {status}"
            except (TimeoutError, OSError) as exc:
                outcome = type(exc).__name__
        if index >= warm:
            latencies.append(loop.time() - scheduled)
            if outcome:
                errors[outcome] = errors.get(outcome, 0) + 1

    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(index, scheduled)))
    await asyncio.gather(*tasks)
    return latencies, errors, total - warm


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--rate", type=float, default=200, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20, help="measured duration")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--max-in-flight", type=int, default=200)
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--gunicorn-threads", type=int, default=4)
    parser.add_argument("--database", default="bench_signup")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--redis", default=DEFAULT_REDIS)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--server-log", default="/tmp/paperboy-bench-gunicorn.log")
    parser.add_argument("--enumeration", action="store_true", help="compare latency per kind of address")
    parser.add_argument("--per-class", type=int, default=300, help="with --enumeration: requests per class")
    args = parser.parse_args(argv)

    port = free_port()
    queue = f"bench-signup-{uuid.uuid4().hex[:8]}"
    env = app_environment(
        DATABASE_URL=database_url(args.postgres, args.database),
        REDIS_URL=args.redis,
        SITE_URL=f"http://127.0.0.1:{port}",
        SIGNUP_RATE_LIMIT="",
        CELERY_TASK_DEFAULT_QUEUE=queue,
    )
    create_database(args.postgres, args.database)
    server = None
    try:
        setup_django(env)
        migrate()
        from django.db import connections

        from digest.models import Topic
        from subscribers.models import OutgoingEmail

        topics = list(Topic.objects.order_by("id").values_list("slug", flat=True)[:3])
        connections.close_all()
        server_log = open(args.server_log, "ab")  # noqa: SIM115
        server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.gunicorn_workers),
                "--worker-class",
                "gthread",
                "--threads",
                str(args.gunicorn_threads),
                "--backlog",
                "2048",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )

        def up():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(up, timeout=30, what="gunicorn")
        cookie, token = csrf_pair(f"http://127.0.0.1:{port}")
        if args.enumeration:
            result = enumeration(
                port=port, cookie=cookie, token=token, topics=topics, per_class=args.per_class
            )
            result["machine"] = machine()
            connections.close_all()
            return print_result(result)
        run = uuid.uuid4().hex[:6]
        latencies, errors, measured = asyncio.run(
            drive(
                port=port,
                rate=args.rate,
                seconds=args.seconds,
                warmup=args.warmup,
                max_in_flight=args.max_in_flight,
                payloads=lambda index: request_bytes(port, cookie, token, topics, index, run),
            )
        )
        client = redis.Redis.from_url(args.redis)
        queued = client.llen(queue)
        client.delete(queue)
        client.close()
        result = {
            "rate": args.rate,
            "seconds": args.seconds,
            "requests": measured,
            "errors": sum(errors.values()),
            "error_kinds": errors,
            "p50_ms": round(1000 * percentile(latencies, 0.50), 1),
            "p90_ms": round(1000 * percentile(latencies, 0.90), 1),
            "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
            "max_ms": round(1000 * max(latencies), 1),
            # No worker runs: each signup is stored in the outbox and a drain task queued.
            "signups_stored": OutgoingEmail.objects.filter(kind=OutgoingEmail.Kind.SIGNUP).count(),
            "drain_tasks_queued": queued,
            "gunicorn": f"{args.gunicorn_workers} workers x {args.gunicorn_threads} threads (gthread)",
            "machine": machine(),
        }
        connections.close_all()
    finally:
        if server:
            stop_process(server)
            server_log.close()
        client = redis.Redis.from_url(args.redis)
        client.delete(queue)
        client.close()
        release_database(args.postgres, args.database, keep=args.keep)
    return print_result(result)


# --- Enumeration: does the answer's timing tell who is subscribed? ------------------------

CLASSES = ("new", "pending", "active", "paused", "unsubscribed", "suppressed")


def seed_classes(per_class: int, topics: list[str]) -> dict[str, list[str]]:
    """Existing subscribers of each status, and fresh addresses for "new"."""
    from digest.models import Topic
    from subscribers.models import Subscriber

    run = uuid.uuid4().hex[:6]
    addresses = {kind: [f"{kind}-{run}-{n}@example.org" for n in range(per_class)] for kind in CLASSES}
    chosen = list(Topic.objects.filter(slug__in=topics))
    for kind in CLASSES:
        if kind == "new":
            continue
        Subscriber.objects.bulk_create(
            Subscriber(email=email, status=kind, signup_user_agent="bench") for email in addresses[kind]
        )
        through = Subscriber.topics.through
        through.objects.bulk_create(
            through(subscriber_id=subscriber_id, topic_id=topic.id)
            for subscriber_id in Subscriber.objects.filter(email__in=addresses[kind]).values_list(
                "id", flat=True
            )
            for topic in chosen[:2]
        )
    return addresses


def signup_bytes(port: int, cookie: str, token: str, topics: list[str], email: str) -> bytes:
    fields = [
        ("csrfmiddlewaretoken", token),
        ("email", email),
        *[("topics", topic) for topic in topics[:2]],
        ("interests", ""),
        ("frequency", "daily"),
        ("weekday", "0"),
    ]
    return form_post(port, cookie, fields)


async def timed(port: int, payload: bytes) -> tuple[float, bytes]:
    """Seconds from connecting to the last byte of the answer, and the answer without its Date."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    elapsed = time.perf_counter() - started
    return elapsed, re.sub(rb"(?im)^(date|set-cookie):.*\r\n", b"", answer)


def auc(higher: list[float], lower: list[float]) -> float:
    """Probability that a random value of `higher` exceeds one of `lower` (ties count half)."""
    ordered = sorted(lower)
    total = 0.0
    for value in higher:
        below = bisect.bisect_left(ordered, value)
        ties = bisect.bisect_right(ordered, value) - below
        total += below + ties / 2
    return total / (len(higher) * len(lower))


def enumeration(*, port: int, cookie: str, token: str, topics: list[str], per_class: int) -> dict:
    addresses = seed_classes(per_class, topics)
    order = [(kind, email) for kind, emails in addresses.items() for email in emails]
    random.Random(7).shuffle(order)
    latencies: dict[str, list[float]] = {kind: [] for kind in CLASSES}
    answers: set[bytes] = set()

    async def run() -> None:
        for _kind, email in order[:50]:  # warm-up, not measured
            await timed(port, signup_bytes(port, cookie, token, topics, "warm-" + email))
        for kind, email in order:
            elapsed, answer = await timed(port, signup_bytes(port, cookie, token, topics, email))
            latencies[kind].append(elapsed)
            answers.add(answer)

    asyncio.run(run())
    medians = {kind: round(1000 * statistics.median(values), 2) for kind, values in latencies.items()}
    pairs = {}
    for index, first in enumerate(CLASSES):
        for second in CLASSES[index + 1 :]:
            value = auc(latencies[first], latencies[second])
            # How well latency separates the two classes, whichever is slower.
            pairs[f"{first}/{second}"] = round(max(value, 1 - value), 3)
    return {
        "requests_per_class": per_class,
        "median_ms": medians,
        "auc": pairs,
        "max_auc": max(pairs.values()),
        "distinct_answers": len(answers),
    }


if __name__ == "__main__":
    main()
