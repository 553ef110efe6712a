"""A reader's personal Atom feed: the papers that match them, day by day."""

from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.syndication.views import Feed
from django.http import HttpRequest
from django.urls import reverse
from django.utils.feedgenerator import Atom1Feed
from django.utils.html import format_html

from digest.web import PaperEntry, featured_at, reader_matches
from subscribers.models import Subscriber


def _host() -> str:
    return urlsplit(settings.SITE_URL).hostname or "localhost"


# Feed takes its object and item types as arguments only in django-stubs; at runtime the base stays bare.
class ReaderFeed(Feed):  # type: ignore[type-arg]
    feed_type = Atom1Feed
    item_guid_is_permalink = False

    def get_object(self, request: HttpRequest, *args: object, **kwargs: object) -> Subscriber:
        subscriber = kwargs["subscriber"]
        assert isinstance(subscriber, Subscriber)
        return subscriber

    def title(self, obj: Subscriber) -> str:
        return f"{settings.PRODUCT_NAME}: papers picked for you"

    def subtitle(self, obj: Subscriber) -> str:
        return "The trending ML papers that match your topics and interests, day by day."

    def link(self, obj: Subscriber) -> str:
        return reverse("digest:papers")

    def feed_guid(self, obj: Subscriber) -> str:
        return f"tag:{_host()},2026:reader-feed/{obj.pk}"

    def items(self, obj: Subscriber) -> list[PaperEntry]:
        return reader_matches(subscriber=obj)

    def item_title(self, item: PaperEntry) -> str:
        return item.paper.title

    def item_link(self, item: PaperEntry) -> str:
        return item.paper.hf_url

    def item_description(self, item: PaperEntry) -> str:
        return format_html(
            "<p>{}</p><p><em>Why: {}</em></p><p>{}</p>",
            item.paper.tldr,
            " · ".join(item.reasons),
            item.paper.authors_line,
        )

    def item_guid(self, item: PaperEntry) -> str:
        return f"tag:{_host()},{item.paper.featured_on}:paper/{item.paper.arxiv_id}"

    def item_pubdate(self, item: PaperEntry) -> datetime:
        return featured_at(item.paper.featured_on)

    def item_updateddate(self, item: PaperEntry) -> datetime:
        return featured_at(item.paper.featured_on)

    def item_author_name(self, item: PaperEntry) -> str:
        return item.paper.authors_line
