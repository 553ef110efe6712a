import factory

from digest.models import Paper, PaperTopic, Topic
from digest.sources.base import PaperRecord


class TopicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Topic
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"topic-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    phrases = ""


class PaperFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Paper

    arxiv_id = factory.Sequence(lambda n: f"2611.{n:05d}")
    title = factory.Sequence(lambda n: f"Paper number {n}")
    abstract = "An abstract."
    sources = factory.LazyFunction(lambda: ["hf"])


class PaperTopicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PaperTopic

    paper = factory.SubFactory(PaperFactory)
    topic = factory.SubFactory(TopicFactory)
    score = 0.8


def record(arxiv_id: str = "2611.00001", **fields) -> PaperRecord:
    """A PaperRecord with sensible defaults for ingest tests."""
    from datetime import date

    defaults = {
        "title": "Speculative Decoding with Draft Trees",
        "abstract": "We accelerate inference with speculative decoding and a draft model.",
        "featured_on": date(2026, 11, 21),
        "upvotes": 10,
        "source": "hf",
    }
    defaults.update(fields)
    return PaperRecord(arxiv_id=arxiv_id, **defaults)
