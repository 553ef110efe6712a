"""The nightly benchmark in its small smoke mode: it must run end to end and lose or
double nothing. Correctness only; a time is never asserted here."""

import json
import subprocess
import sys
import uuid

import pytest

from tests.support import BASE_DIR, app_env


@pytest.mark.services
@pytest.mark.timeout(180)
def test_nightly_bench_smoke_sends_every_due_digest_exactly_once(postgres_required, redis_url):
    from django.db import connection

    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    server = f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/postgres"
    database = f"bench_smoke_{uuid.uuid4().hex[:8]}"
    command = [
        sys.executable,
        "bench/nightly.py",
        "--subscribers",
        "500",
        "--papers",
        "60",
        "--workers",
        "2",
        "--chunk-size",
        "100",
        "--naive",
        "--naive-sample",
        "20",
        "--database",
        database,
        "--postgres",
        server,
        "--redis",
        redis_url,
    ]
    done = subprocess.run(command, cwd=BASE_DIR, env=app_env(), capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["run"]["status"] == "succeeded"
    assert result["due"] > 300
    assert result["digests"] == result["due"] - result["empty"]
    assert result["duplicates"] == 0
    assert result["missing"] == 0
    assert result["unexpected"] == 0
    assert result["invalid"] == 0
    assert 0 < result["max_html_bytes"] <= 102 * 1024
    assert result["run"]["failed"] == 0
    assert all(rss for rss in result["worker_peak_rss_mb"])
    assert result["db_round_trips"] > 0
    assert result["naive"]["sent"] > 0
    # The machine's speed, for comparing runs made on different machines.
    assert result["machine"]["reference_ms"] > 0
