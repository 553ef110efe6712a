"""The sample digest on the signup page, made by the real composer from the demo papers.

The papers come from digest/sample_data/daily_papers.json (written for the
demo), tagged with the site's active topics and ranked for an example reader,
so the sample always looks exactly like the email people get. Personal links
point back to the signup page.
"""

from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.urls import reverse

from digest.compose import DigestComposer, Reader, build_preferences
from digest.models import Topic
from digest.papers import PaperView, inert, safe_url
from digest.sources.hf_api import parse
from digest.tagging.tagger import default_topic_specs, get_tagger

SAMPLE_FILE = Path(__file__).resolve().parent / "sample_data" / "daily_papers.json"
SAMPLE_TOPICS = ("reasoning", "efficiency")
SAMPLE_INTERESTS = "speculative decoding"
SAMPLE_SIZE = 4


def sample_papers() -> dict[int, PaperView]:
    """The demo papers as the composer sees them, numbered from 1 in file order."""
    records = parse(SAMPLE_FILE.read_text(encoding="utf-8"))
    topics = list(Topic.objects.filter(is_active=True)) or default_topic_specs()
    tagger = get_tagger(topics)
    papers: dict[int, PaperView] = {}
    for number, record in enumerate(records, start=1):
        papers[number] = PaperView(
            id=number,
            arxiv_id=record.arxiv_id,
            title=inert(record.title),
            authors=tuple(inert(name) for name in record.authors),
            abstract=inert(record.abstract),
            upvotes=record.upvotes,
            num_comments=record.num_comments,
            github_repo=safe_url(record.github_repo),
            project_page=safe_url(record.project_page),
            thumbnail_url="",
            featured_on=record.featured_on,
            pinned=False,
            keywords=record.ai_keywords,
            topic_scores=dict(tagger.tag(record.title, record.abstract, record.ai_keywords)),
            ai_summary=inert(record.ai_summary),
            categories=record.categories,
            day=record.featured_on,
        )
    return papers


@lru_cache(maxsize=4)
def _sample_html(site_url: str, product_name: str) -> str:
    papers = sample_papers()
    last_day = max(paper.featured_on for paper in papers.values() if paper.featured_on)
    edition = last_day + timedelta(days=1)
    names = dict(Topic.objects.values_list("slug", "name"))
    composer = DigestComposer(edition=edition, papers=papers, names=names)
    reader = Reader(
        subscriber_id=0,
        email="reader@example.org",
        token_version=0,
        preferences=build_preferences(
            topics=SAMPLE_TOPICS, interests=SAMPLE_INTERESTS, digest_size=SAMPLE_SIZE, affinity=None
        ),
        window_start=last_day,
    )
    compiled = composer.compiled_for(reader)
    if compiled is None:
        return ""
    signup = f"{site_url}{reverse('subscribers:signup')}"
    values = dict.fromkeys(("UNSUB", "MANAGE", "VIEW"), signup)
    values.update({f"FB{paper_id}": "sample" for paper_id in compiled.paper_ids})
    html, _ = compiled.personalise(values)
    return html


def sample_digest_html() -> str:
    """The sample email's HTML, built once per process (the demo papers never change)."""
    return _sample_html(settings.SITE_URL, settings.PRODUCT_NAME)
