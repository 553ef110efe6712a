"""
Time a subscriber import: check every line of a CSV list, then add the new readers in one
transaction. Prints one JSON object.

    .venv/bin/python bench/import_subscribers.py                 # 10,000 rows, on PostgreSQL `bench_import`
    .venv/bin/python bench/import_subscribers.py --rows 2000 --pending

The list has 1% duplicate lines and 1% addresses already on the list. By default the readers are
imported as consented (no emails); with --pending each gets a confirmation email, queued on commit
(in-process here, into the outbox backend's local-memory stand-in).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_POSTGRES, bench_database, machine, print_result

TOPICS = ["reasoning", "agents", "alignment", "code", "efficiency", "multimodal", "video", "robotics"]


def csv_text(rows: int, known: list[str]) -> str:
    chooser = random.Random(7)
    lines = ["email,topics,interests,frequency"]
    for n in range(rows):
        if n and n % 100 == 0:
            email = f"reader{n - 1}@example.org"  # a duplicate line
        elif n % 100 == 50 and known:
            email = known[n % len(known)]  # already on the list
        else:
            email = f"reader{n}@example.org"
        topics = " ".join(chooser.sample(TOPICS, chooser.randint(1, 3)))
        interests = "speculative decoding" if n % 10 == 0 else ""
        lines.append(f"{email},{topics},{interests},{'weekly' if n % 5 == 0 else 'daily'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--pending", action="store_true", help="Import unconsented: a confirmation each.")
    parser.add_argument("--database", default="bench_import")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    with bench_database(
        args.postgres,
        args.database,
        keep=args.keep,
        REDIS_URL="",
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    ):
        from django.core import mail

        from subscribers.imports import subscribers_import
        from subscribers.models import Subscriber
        from subscribers.services import subscriber_add

        known = [f"known{n}@example.org" for n in range(max(1, args.rows // 100))]
        for email in known:
            subscriber_add(email=email, topics=[], interests="x", confirmed=True)
        text = csv_text(args.rows, known)
        mail.outbox = []
        started = time.perf_counter()
        checked = subscribers_import(text=text, dry_run=True)
        check_s = time.perf_counter() - started
        started = time.perf_counter()
        report = subscribers_import(
            text=text, consented=not args.pending, source="benchmark list", dry_run=False
        )
        import_s = time.perf_counter() - started
        result = {
            "rows": args.rows,
            "csv_bytes": len(text.encode()),
            "check_only_seconds": round(check_s, 3),
            "import_seconds": round(import_s, 3),
            "rows_per_second": round(args.rows / import_s),
            "added": report.added,
            "skipped": len(report.skipped),
            "errors": len(checked.errors),
            "confirmation_emails": len(getattr(mail, "outbox", [])),
            "subscribers": Subscriber.objects.count(),
            "machine": machine(),
        }
    return print_result(result)


if __name__ == "__main__":
    main()
