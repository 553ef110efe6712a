"""Realistic benchmark data: a day of papers in the Hugging Face API's shape, and readers.

Papers are built from the bundled sample papers (digest/sample_data), each new
paper mixing one sample's title and abstract with a sentence and a keyword of
another, so the real tagger gives them a realistic spread of topics. Upvotes
follow a heavy tail, as they do on Daily Papers.

Readers pick topics from a skewed (Zipf-like) distribution over the 22 topics;
10% also write free-text interests, 20% take the weekly digest, and some are
paused, unsubscribed or still pending. A few have voted on papers, so their
ranking carries a learned affinity. Everything is drawn from a seeded random
generator, so a run with the same arguments seeds the same data.
"""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, date, datetime, time, timedelta

from bench.common import ROOT

SAMPLE = ROOT / "digest" / "sample_data" / "daily_papers.json"

INTERESTS = (
    "speculative decoding",
    "mixture of experts",
    "diffusion transformers",
    "reward hacking",
    "test-time compute",
    "state space models",
    "KV cache compression",
    "vision language action models",
    "synthetic data for math",
    "LLM-as-a-judge",
    "sparse autoencoders",
    "text-to-video",
    "protein structure",
    "retrieval augmented generation",
    "code agents",
    "low-bit quantization",
    "long context evaluation",
    "multilingual speech recognition",
    "preference optimization",
    "world models",
    "tool use",
    "small language models",
    "jailbreaks",
    "3D gaussian splatting",
    "chain of thought distillation",
    "web agents",
    "benchmark contamination",
    "process reward models",
    "video understanding",
    "efficient attention",
)
STATUSES = (("active", 90), ("paused", 4), ("unsubscribed", 5), ("pending", 1))
TOPIC_COUNTS = ((1, 25), (2, 30), (3, 25), (4, 12), (5, 8))
DIGEST_SIZES = ((8, 70), (5, 10), (10, 15), (15, 5))
DOMAINS = ("example.org", "example.com", "example.net", "mail.example.edu")


def _weighted(rng: random.Random, pairs):
    values, weights = zip(*pairs, strict=True)
    return rng.choices(values, weights)[0]


def api_items(count: int, *, day: date, seed: int = 7) -> list[dict]:
    """`count` daily-papers items featured on `day`, in the API's JSON shape."""
    rng = random.Random(seed)
    samples = json.loads(SAMPLE.read_text(encoding="utf-8"))
    items = []
    featured_at = datetime.combine(day, time(12, 0), tzinfo=UTC)
    for index in range(count):
        base = samples[index % len(samples)]
        other = samples[(index * 7 + 3) % len(samples)]
        item = copy.deepcopy(base)
        paper = item["paper"]
        extra = other["paper"]["summary"].split(". ")[0].rstrip(".")
        paper["id"] = f"{day:%y%m}.{10000 + index:05d}"
        if index >= len(samples):
            paper["title"] = f"{paper['title']} ({index // len(samples) + 1})"
        paper["summary"] = f"{paper['summary']} {extra}."
        paper["ai_keywords"] = (
            list(paper.get("ai_keywords") or []) + list(other["paper"].get("ai_keywords") or [])[:1]
        )
        paper["upvotes"] = min(900, int(rng.paretovariate(1.1) * 2))
        paper["submittedOnDailyAt"] = (
            (featured_at + timedelta(seconds=index)).isoformat().replace("+00:00", "Z")
        )
        item["thumbnail"] = (
            f"https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{paper['id']}.png"
        )
        item["numComments"] = rng.randint(0, 12)
        items.append(item)
    return items


def seed_papers(count: int, *, day: date) -> dict:
    """Parse, upsert and tag `count` papers featured on `day`; returns what ingest did."""
    from digest.services.ingest import papers_ingest
    from digest.sources import hf_api

    text = json.dumps(api_items(count, day=day))
    records = hf_api.parse(text, day=day)
    result = papers_ingest(records=records)
    return {"created": result.created, "tagged": result.tagged}


def seed_readers(count: int, *, edition: date, seed: int = 11) -> dict:
    """`count` subscribers, their topics and a few votes, written with COPY."""
    from django.db import connection, transaction

    from digest.models import Paper, Topic

    rng = random.Random(seed)
    topic_ids = list(Topic.objects.filter(is_active=True).order_by("id").values_list("id", flat=True))
    rng.shuffle(topic_ids)  # which topics are popular
    topic_weights = [1 / (rank + 1) ** 1.1 for rank in range(len(topic_ids))]
    paper_ids = list(Paper.objects.values_list("id", flat=True))
    now = datetime.now(UTC)
    yesterday = datetime.combine(edition - timedelta(days=1), time(6, 0), tzinfo=UTC)
    last_week = datetime.combine(edition - timedelta(days=7), time(6, 0), tzinfo=UTC)

    rows = []
    picks: list[list[int]] = []
    for index in range(count):
        status = _weighted(rng, STATUSES)
        weekly = rng.random() < 0.2
        interests = ""
        if rng.random() < 0.10:
            interests = "\n".join(rng.sample(INTERESTS, rng.choice((1, 1, 2))))
        wanted = _weighted(rng, TOPIC_COUNTS)
        chosen: set[int] = set()
        while len(chosen) < wanted:
            chosen.add(rng.choices(topic_ids, topic_weights)[0])
        picks.append(sorted(chosen))
        rows.append(
            (
                f"reader{index:07d}@{DOMAINS[index % len(DOMAINS)]}",
                status,
                interests,
                "weekly" if weekly else "daily",
                rng.randrange(7) if weekly else 0,
                _weighted(rng, DIGEST_SIZES),
                1,
                now,
                "",
                now if status != "pending" else None,
                "",
                "",
                "",
                0,
                (last_week if weekly else yesterday) if status == "active" else None,
                now,
                now,
                index % 20 == 0,  # one reader in twenty wants abstracts in the email
            )
        )
    columns = (
        "email, status, interests, frequency, weekday, digest_size, token_version, signup_at, "
        "signup_user_agent, confirmed_at, confirm_user_agent, unsubscribe_reason, suppression_reason, "
        "soft_bounce_count, last_digest_at, created_at, updated_at, with_abstracts"
    )
    votes = 0
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY subscribers_subscriber ({columns}) FROM STDIN") as copy_in:
            for row in rows:
                copy_in.write_row(row)
        cursor.execute("SELECT id FROM subscribers_subscriber ORDER BY id")
        ids = [row[0] for row in cursor.fetchall()][-count:]
        with raw.copy("COPY subscribers_subscriber_topics (subscriber_id, topic_id) FROM STDIN") as copy_in:
            for subscriber_id, chosen in zip(ids, picks, strict=True):
                for topic_id in chosen:
                    copy_in.write_row((subscriber_id, topic_id))
        with raw.copy(
            "COPY digest_feedback (subscriber_id, paper_id, vote, created_at, updated_at) FROM STDIN"
        ) as copy_in:
            for subscriber_id in ids:
                if paper_ids and rng.random() < 0.03:
                    for paper_id in rng.sample(paper_ids, min(len(paper_ids), rng.randint(1, 4))):
                        copy_in.write_row((subscriber_id, paper_id, rng.choice((1, 1, -1)), now, now))
                        votes += 1
        cursor.execute("ANALYZE")
    return {"subscribers": count, "votes": votes}


def reset_last_digest(*, edition: date) -> None:
    """Put readers' last-digest times back to the seeded values (after a run moved them)."""
    from django.db import connection

    yesterday = datetime.combine(edition - timedelta(days=1), time(6, 0), tzinfo=UTC)
    last_week = datetime.combine(edition - timedelta(days=7), time(6, 0), tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE subscribers_subscriber SET last_digest_at = "
            "CASE WHEN frequency = 'weekly' THEN %s ELSE %s END WHERE status = 'active'",
            [last_week, yesterday],
        )
