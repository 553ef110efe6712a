"""
Load the signup endpoint at a fixed request rate and report latency. Prints one JSON object.

    .venv/bin/python bench/signup.py                          # 200 requests/s for 20 s
    .venv/bin/python bench/signup.py --rate 300 --seconds 30 --gunicorn-workers 3

The server is gunicorn on PostgreSQL (its own database, `bench_signup`) with
Redis DB 5 as the Celery broker, so each signup queues its confirmation email
instead of sending it. The per-IP signup limit is off (SIGNUP_RATE_LIMIT=""),
as every request comes from 127.0.0.1.

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
import json
import re
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    DEFAULT_POSTGRES,
    DEFAULT_REDIS,
    ROOT,
    app_environment,
    create_database,
    database_url,
    drop_database,
    free_port,
    machine,
    migrate,
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
    body = urlencode(
        [
            ("csrfmiddlewaretoken", token),
            ("email", f"signup-{run}-{index}@example.org"),
            *[("topics", topic) for topic in topics[index % 2 :]],
            ("interests", "speculative decoding, world models" if index % 10 == 0 else ""),
            ("frequency", "weekly" if index % 5 == 0 else "daily"),
            ("weekday", "2"),
        ]
    ).encode()
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
        import redis
        from django.db import connections

        from digest.models import Topic
        from subscribers.models import Subscriber

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
            "subscribers_created": Subscriber.objects.count(),
            "confirmations_queued": queued,
            "gunicorn": f"{args.gunicorn_workers} workers x {args.gunicorn_threads} threads (gthread)",
            "machine": machine(),
        }
        connections.close_all()
    finally:
        if server:
            stop_process(server)
            server_log.close()
        if not args.keep:
            drop_database(args.postgres, args.database)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
