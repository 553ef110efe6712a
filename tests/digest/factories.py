"""Source records for ingest tests. Papers in the database come from `tests.digest.builders.make_paper`."""

from datetime import date

from digest.sources.base import PaperRecord


def record(arxiv_id: str = "2611.00001", **fields) -> PaperRecord:
    """A PaperRecord with sensible defaults for ingest tests."""
    defaults = {
        "title": "Speculative Decoding with Draft Trees",
        "abstract": "We accelerate inference with speculative decoding and a draft model.",
        "featured_on": date(2026, 11, 21),
        "upvotes": 10,
        "source": "hf",
    }
    defaults.update(fields)
    return PaperRecord(arxiv_id=arxiv_id, **defaults)
