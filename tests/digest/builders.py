"""Small builders for papers and readers used by the digest tests."""

from datetime import date, timedelta

from digest.models import Paper, PaperTopic, Topic
from subscribers.models import Subscriber
from tests.subscribers.factories import SubscriberFactory

EDITION = date(2026, 11, 24)
YESTERDAY = EDITION - timedelta(days=1)


def make_paper(
    n: int, *, topics: dict[str, float], day: date = YESTERDAY, upvotes: int = 10, **fields
) -> Paper:
    defaults = {
        "arxiv_id": f"2611.{n:05d}",
        "title": f"Paper number {n} about {', '.join(topics) or 'nothing'}",
        "abstract": f"We study problem {n}. " * 5,
        "authors": ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"],
        "featured_on": day,
        "upvotes": upvotes,
        "sources": ["hf"],
    }
    defaults.update(fields)
    paper = Paper.objects.create(**defaults)
    for slug, score in topics.items():
        PaperTopic.objects.create(paper=paper, topic=Topic.objects.get(slug=slug), score=score)
    return paper


def make_reader(email: str, topics: list[str], **fields) -> Subscriber:
    fields.setdefault("interests", "")
    fields.setdefault("status", Subscriber.Status.ACTIVE)
    # These readers get only what matched; the "Also trending" section has tests of its own.
    fields.setdefault("show_trending", False)
    return SubscriberFactory(email=email, topics=topics, **fields)
