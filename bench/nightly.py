"""
The whole nightly run at scale, end to end, on real services; prints one JSON object.

    .venv/bin/python bench/nightly.py --subscribers 100000 --papers 300
    .venv/bin/python bench/nightly.py --subscribers 100000 --esp postmark --esp-latency-ms 100 --naive
    .venv/bin/python bench/nightly.py --subscribers 10000 --esp postmark   # one call per reader

It creates its own PostgreSQL database (default `bench`, dropped at the end
unless --keep), seeds a day of papers (parsed, upserted and tagged by the real
ingest) and realistic readers, starts the fake ESP (tests/fake_esp.py) in its
own process and W Celery worker processes (solo pool, one process each) on
Redis DB 5, then queues `digest.nightly_run` and times it from the moment the
run is queued (planning starts) to the last message the ESP accepted.

--esp picks the anymail backend the workers send through: `sendgrid` (the
default) sends readers who share a digest in batched calls with per-recipient
substitutions; `postmark` sends one call per reader. The naive loop always
sends one message per reader, through the same backend.

The fake ESP validates every message (one recipient, both parts, the
unsubscribe headers, HTML within 102 KB) and counts messages per recipient.
`duplicates` counts extra copies to any address; `missing` counts due readers
who neither got a digest nor were legitimately skipped (nothing matched), plus
any delivery left unfinished. `unexpected` counts addresses that were not due
(paused, unsubscribed, weekly on another day) but got mail anyway.

`db_round_trips_per_1000` is counted inside every worker at the psycopg level
(see bench/probe.py), planning included, divided by digests sent.

With --naive it also times the plain loop a first Django newsletter would be
(per reader: query, rank, render MJML, open a connection and send), in one
process, on the first --naive-sample due readers, and reports the ratio.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    DEFAULT_POSTGRES,
    DEFAULT_REDIS,
    ROOT,
    CPUMeter,
    FakeESPProcess,
    app_environment,
    celery_worker_command,
    create_database,
    database_url,
    machine,
    migrate,
    peak_rss_mb,
    pids_named,
    print_result,
    release_database,
    setup_django,
    stop_process,
    wait_until,
)

# A day no test uses, so the run's send journal in Redis never meets a test's.
EDITION = date(2031, 3, 5)


def esp_settings(esp: str, url: str) -> dict[str, str]:
    """Environment pointing the app's anymail backend at the fake ESP."""
    if esp == "sendgrid":
        return {
            "EMAIL_BACKEND": ESP_BACKENDS[esp],
            "ANYMAIL_SENDGRID_API_KEY": "bench-key",
            "ANYMAIL_SENDGRID_API_URL": url + "v3/",
        }
    if esp in BATCHING_ESPS:
        backend, api_url, credentials = BATCHING_ESPS[esp]
        return {"EMAIL_BACKEND": backend, f"ANYMAIL_{esp.upper()}_API_URL": url + api_url, **credentials}
    return {
        "EMAIL_BACKEND": ESP_BACKENDS[esp],
        "ANYMAIL_POSTMARK_SERVER_TOKEN": "bench-token",
        "ANYMAIL_POSTMARK_API_URL": url,
    }


# Batching ESPs beside SendGrid: backend, API path at the fake ESP, credentials.
BATCHING_ESPS = {
    "mailgun": ("anymail.backends.mailgun.EmailBackend", "v3", {"ANYMAIL_MAILGUN_API_KEY": "bench-key"}),
    "mailjet": (
        "anymail.backends.mailjet.EmailBackend",
        "v3.1/",
        {"ANYMAIL_MAILJET_API_KEY": "bench", "ANYMAIL_MAILJET_SECRET_KEY": "bench-secret"},
    ),
    "sparkpost": (
        "anymail.backends.sparkpost.EmailBackend",
        "api/v1/",
        {"ANYMAIL_SPARKPOST_API_KEY": "bench"},
    ),
}
ESP_BACKENDS = {
    "sendgrid": "anymail.backends.sendgrid.EmailBackend",
    "postmark": "anymail.backends.postmark.EmailBackend",
    **{esp: backend for esp, (backend, _, _) in BATCHING_ESPS.items()},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10000)
    parser.add_argument("--papers", type=int, default=300)
    parser.add_argument(
        "--workers", type=int, default=4, help="worker processes (docker-compose runs 4: two per core)"
    )
    parser.add_argument("--naive", action="store_true", help="also time the naive per-reader loop")
    parser.add_argument("--naive-sample", type=int, default=2000, help="due readers the naive loop sends to")
    parser.add_argument("--chunk-size", type=int, default=None, help="DIGEST_CHUNK_SIZE for the workers")
    parser.add_argument(
        "--esp",
        choices=sorted(ESP_BACKENDS),
        default="sendgrid",
        help="anymail backend: sendgrid (batched, the default), mailgun, mailjet or sparkpost (batched), "
        "or postmark (one call per reader)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="DIGEST_ESP_BATCH_SIZE for the workers")
    parser.add_argument(
        "--esp-latency-ms",
        type=float,
        default=0.0,
        help="the fake ESP answers each send call after this long, as a real ESP API does (default: at once)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="DIGEST_SEND_CONCURRENCY: ESP calls in flight per worker",
    )
    parser.add_argument(
        "--pool",
        choices=("solo", "gevent"),
        default="solo",
        help="Celery pool of each worker: solo (the senders are threads) or gevent "
        "(pip install gevent; the same senders become greenlets)",
    )
    parser.add_argument("--database", default="bench", help="scratch database name (must start with 'bench')")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="URL of the PostgreSQL server to use")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="Redis URL, with a DB number of its own")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--worker-log", default=None, help="write worker output to this file")
    parser.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="sample the workers and the fake ESP with py-spy (pip install py-spy) into DIR",
    )
    return parser.parse_args(argv)


class Workers:
    """W `celery worker` processes with the solo pool: each process does its own work,
    so its peak RSS is the worker's."""

    def __init__(self, count: int, env: dict, queue: str, log_path: str | None, pool: str = "solo"):
        self.queue = queue
        self.log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.processes = []
        for index in range(count):
            command = celery_worker_command(
                queue=queue,
                hostname=f"{queue}-{index}@%h",
                pool=pool,
                loglevel="WARNING",
                extra=("--without-heartbeat", "--include", "bench.probe"),
            )
            self.processes.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
            )

    def peak_rss_mb(self) -> list[float | None]:
        return [peak_rss_mb(process.pid) for process in self.processes]

    def alive(self) -> bool:
        return all(process.poll() is None for process in self.processes)

    def stop(self):
        for process in self.processes:
            stop_process(process)
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def due_emails(edition: date) -> set[str]:
    """Who should get this edition, decided here from the seeded rows, not by the app."""
    from subscribers.models import Subscriber

    return {
        email.lower()
        for email, frequency, weekday in Subscriber.objects.filter(status="active").values_list(
            "email", "frequency", "weekday"
        )
        if frequency == "daily" or weekday == edition.weekday()
    }


def verify(*, run_id: int, edition: date, accepted: dict[str, int]) -> dict:
    from digest.models import Delivery

    due = due_emails(edition)
    rows = list(Delivery.objects.filter(run_id=run_id).values_list("subscriber__email", "status"))
    empty = {email.lower() for email, status in rows if status == Delivery.Status.EMPTY}
    unfinished = sum(1 for _, status in rows if status in (Delivery.Status.PLANNED, Delivery.Status.SENDING))
    got = set(accepted)
    return {
        "due": len(due),
        "empty": len(empty & due),
        "duplicates": sum(count - 1 for count in accepted.values() if count > 1),
        "missing": len(due - got - empty) + unfinished,
        "unexpected": len(got - due),
    }


def naive_loop(*, edition: date, limit: int) -> dict:
    """What a first Django newsletter does: for each reader, query, rank, render, send.

    Papers are loaded once (anyone would), but every reader costs their own
    queries, their own MJML render and their own connection to the ESP, and a
    Delivery row saved one at a time."""
    from django.utils import timezone

    from digest.compose import (
        DigestComposer,
        Reader,
        build_preferences,
        digest_headers,
        digest_message,
        window_start,
    )
    from digest.models import Delivery
    from digest.selectors import load_affinities
    from digest.services.plan import due_subscribers
    from subscribers.models import Subscriber

    composer = DigestComposer.for_edition(edition)
    ids = list(due_subscribers(edition=edition).order_by("id").values_list("id", flat=True)[:limit])
    sent = empty = 0
    started = time.perf_counter()
    for subscriber_id in ids:
        subscriber = Subscriber.objects.get(id=subscriber_id)
        topics = list(subscriber.topics.filter(is_active=True).values_list("slug", flat=True))
        preferences = build_preferences(
            topics=topics,
            interests=subscriber.interests,
            digest_size=subscriber.digest_size,
            affinity=load_affinities([subscriber_id]).get(subscriber_id),
        )
        start = window_start(
            edition=edition,
            frequency=subscriber.frequency,
            last_digest_on=subscriber.last_digest_at.date() if subscriber.last_digest_at else None,
        )
        ranked = composer.ranker(start).rank(preferences)[: preferences.max_items]
        if not ranked:
            empty += 1
            continue
        reader = Reader(subscriber_id, subscriber.email, subscriber.token_version, preferences, start)
        compiled = composer.render(ranked, preferences)
        values = composer.personal_values(reader, compiled)
        html, text = compiled.personalise(values)
        message = digest_message(
            to=subscriber.email,
            subject=compiled.subject,
            text=text,
            html=html,
            edition=edition,
            headers=digest_headers(unsubscribe_url=values["UNSUB"]),
        )
        message.send()
        Delivery.objects.create(
            subscriber=subscriber,
            edition=edition,
            status=Delivery.Status.SENT,
            sent_at=timezone.now(),
            esp_message_id=message.anymail_status.message_id or "",
            subject=compiled.subject,
            paper_ids=[item.paper_id for item in ranked],
        )
        subscriber.last_digest_at = timezone.now()
        subscriber.save(update_fields=["last_digest_at"])
        sent += 1
    seconds = time.perf_counter() - started
    return {
        "readers": len(ids),
        "sent": sent,
        "empty": empty,
        "seconds": round(seconds, 2),
        "digests_per_s": round(sent / seconds, 1) if seconds else None,
    }


def start_profilers(folder: str, workers: Workers, esp: FakeESPProcess) -> list[subprocess.Popen]:
    """py-spy in raw (collapsed stack) form, one file per process; see bench/profile_summary.py."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    targets = [(f"worker-{i}", p.pid) for i, p in enumerate(workers.processes)] + [("esp", esp.process.pid)]
    return [
        subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--format",
                "raw",
                "--rate",
                "250",
                "--nonblocking",
                "--pid",
                str(pid),
                "--output",
                str(Path(folder) / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in targets
    ]


def main(argv=None) -> dict:
    args = parse_args(argv)
    queue = f"bench-{uuid.uuid4().hex[:10]}"
    db_url = database_url(args.postgres, args.database)
    base_env = app_environment(DATABASE_URL=db_url, REDIS_URL=args.redis)
    esp = FakeESPProcess(base_env, latency_ms=args.esp_latency_ms)
    env = app_environment(
        DATABASE_URL=db_url,
        REDIS_URL=args.redis,
        **esp_settings(args.esp, esp.url),
        CELERY_TASK_DEFAULT_QUEUE=queue,
        DIGEST_CHUNK_SIZE=args.chunk_size,
        DIGEST_ESP_BATCH_SIZE=args.batch_size,
        DIGEST_SEND_CONCURRENCY=args.concurrency,
        PAPERBOY_COUNT_QUERIES="1",
        # As the image sets it (Dockerfile).
        MALLOC_ARENA_MAX="2",
    )
    workers = None
    result: dict = {
        "subscribers": args.subscribers,
        "papers": args.papers,
        "workers": args.workers,
        "esp": args.esp,
        "esp_latency_ms": args.esp_latency_ms,
        "pool": args.pool,
    }
    try:
        create_database(args.postgres, args.database)
        setup_django(env)
        import redis
        from django.conf import settings

        from bench import seed
        from digest.models import DigestRun
        from digest.tasks import nightly_run

        client = redis.Redis.from_url(args.redis)
        journal_key = f"{settings.CACHES['default'].get('KEY_PREFIX', 'paperboy')}:sent:{EDITION.isoformat()}"
        client.delete(journal_key)

        started = time.perf_counter()
        migrate()
        seed.seed_papers(args.papers, day=EDITION - timedelta(days=1))
        seed.seed_readers(args.subscribers, edition=EDITION)
        result["seed_seconds"] = round(time.perf_counter() - started, 1)

        if args.naive:
            naive = naive_loop(edition=EDITION, limit=args.naive_sample)
            from digest.models import Delivery

            Delivery.objects.filter(edition=EDITION).delete()
            seed.reset_last_digest(edition=EDITION)
            esp.reset()

        workers = Workers(args.workers, env, queue, args.worker_log, pool=args.pool)
        wait_until(
            lambda: not workers.alive() or client.hlen(f"bench:{queue}:ready") >= args.workers,
            timeout=60,
            what="the workers",
        )
        if not workers.alive():
            raise SystemExit("a worker exited at startup; rerun with --worker-log FILE")

        profilers = start_profilers(args.profile, workers, esp) if args.profile else []
        meter = CPUMeter(
            {
                "workers": lambda: [process.pid for process in workers.processes],
                "fake_esp": lambda: [esp.process.pid],
                "postgres": lambda: pids_named("postgres"),
                "redis": lambda: pids_named("redis-server"),
            }
        )
        meter.start()
        t0 = time.time()
        run_id = nightly_run.apply_async(args=[EDITION.isoformat(), False], queue=queue).get(
            timeout=args.timeout
        )

        def finished():
            status = DigestRun.objects.filter(id=run_id).values_list("status", flat=True).first()
            return status in (DigestRun.Status.SUCCEEDED, DigestRun.Status.FAILED) or not workers.alive()

        wait_until(finished, timeout=args.timeout, what="the run to finish", interval=0.1)
        closed = time.time()
        cpu = meter.stop()
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for profiler in profilers:
            profiler.wait(timeout=60)
        stats = esp.stats()
        last = stats["last_accepted_at"] or closed
        run = DigestRun.objects.get(id=run_id)
        sent = stats["accepted"]
        seconds = last - t0
        result.update(
            {
                "digests": sent,
                "seconds": round(seconds, 2),
                "digests_per_s": round(sent / seconds, 1) if seconds > 0 else None,
                "seconds_to_run_closed": round(closed - t0, 2),
            }
        )
        # Give the workers a moment to report their last task's count.
        time.sleep(0.3)
        round_trips = {k.decode(): int(v) for k, v in client.hgetall(f"bench:{queue}:round_trips").items()}
        result["cpu_seconds"] = cpu
        result["worker_peak_rss_mb"] = workers.peak_rss_mb()
        result["db_round_trips"] = sum(round_trips.values())
        result["db_round_trips_per_1000"] = (
            round(1000 * sum(round_trips.values()) / sent, 2) if sent else None
        )
        result["max_html_bytes"] = stats["max_html_bytes"]
        result["invalid"] = stats["invalid"]
        result.update(verify(run_id=run_id, edition=EDITION, accepted=esp.recipients()))
        result["run"] = {
            "status": run.status,
            "due": run.due_count,
            "sent": run.sent_count,
            "empty": run.empty_count,
            "failed": run.failed_count,
        }
        result["chunk_size"] = args.chunk_size or settings.DIGEST_CHUNK_SIZE
        result["esp_calls"] = stats["calls"]
        result["recipients_per_call"] = round(sent / stats["calls"], 1) if stats["calls"] else None
        # Calls the ESP held at once (its own count), and the average over the run.
        result["calls_in_flight"] = {
            "max": stats["max_in_flight"],
            "avg": round(stats["calls"] * args.esp_latency_ms / 1000 / seconds, 1) if seconds > 0 else None,
        }
        result["concurrency"] = args.concurrency or settings.DIGEST_SEND_CONCURRENCY
        if args.naive:
            result["naive"] = naive
            if naive["digests_per_s"] and result["digests_per_s"]:
                result["speedup_vs_naive"] = round(result["digests_per_s"] / naive["digests_per_s"], 1)
        result["machine"] = machine()
        client.delete(journal_key, f"bench:{queue}:ready", f"bench:{queue}:round_trips")
        client.close()
    finally:
        if workers:
            workers.stop()
        esp.stop()
        release_database(args.postgres, args.database, keep=args.keep)
    return print_result(result)


if __name__ == "__main__":
    main()
