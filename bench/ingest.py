"""
Time the ingest of one day of papers: parse the API's JSON, upsert, tag. Prints one JSON object.

    .venv/bin/python bench/ingest.py                 # 1,000 papers, on PostgreSQL database `bench_ingest`
    .venv/bin/python bench/ingest.py --papers 300

The first pass creates every paper; the second ingests the same day again with
changed upvotes, which updates counts and leaves topics alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_POSTGRES, bench_database, machine, print_result

DAY = date(2031, 3, 4)


def timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--database", default="bench_ingest")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    with bench_database(args.postgres, args.database, keep=args.keep, REDIS_URL=""):
        from bench.seed import api_items
        from digest.models import PaperTopic
        from digest.services.ingest import papers_ingest
        from digest.sources import hf_api

        items = api_items(args.papers, day=DAY)
        text = json.dumps(items)
        records, parse_s = timed(lambda: hf_api.parse(text, day=DAY))
        first, first_s = timed(lambda: papers_ingest(records=records))
        tags = PaperTopic.objects.count()
        for item in items:
            item["paper"]["upvotes"] += 1
        again = hf_api.parse(json.dumps(items), day=DAY)
        second, second_s = timed(lambda: papers_ingest(records=again))
        result = {
            "papers": args.papers,
            "json_bytes": len(text),
            "parse_seconds": round(parse_s, 3),
            "upsert_and_tag_seconds": round(first_s, 3),
            "seconds": round(parse_s + first_s, 3),
            "created": first.created,
            "tagged": first.tagged,
            "topic_tags": tags,
            "reingest_seconds": round(second_s, 3),
            "reingest_updated": second.updated,
            "machine": machine(),
        }
    return print_result(result)


if __name__ == "__main__":
    main()
