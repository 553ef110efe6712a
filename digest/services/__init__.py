"""Writes for the digest app; see the modules for details."""

from digest.services.ingest import (
    IngestResult,
    papers_fetch,
    papers_ingest,
    papers_load_file,
    papers_load_text,
    papers_retag,
)

__all__ = [
    "IngestResult",
    "papers_fetch",
    "papers_ingest",
    "papers_load_file",
    "papers_load_text",
    "papers_retag",
]
