from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from digest.models import Topic
from subscribers.follows import clean_arxiv_categories, clean_author_names, split_authors, split_categories
from subscribers.forms import InterestsField
from subscribers.models import Subscriber
from subscribers.selectors import subscriber_get_by_email
from subscribers.services import subscriber_add


class Command(BaseCommand):
    help = (
        "Add a subscriber. Without --confirmed they get the confirmation email (double opt-in); "
        "with it they are active at once, for admins and the demo."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--topics", default="", help="Comma-separated topic slugs, e.g. reasoning,agents")
        parser.add_argument("--interests", default="", help='Free text, e.g. "speculative decoding, RLHF"')
        parser.add_argument(
            "--frequency", choices=Subscriber.Frequency.values, default=Subscriber.Frequency.DAILY
        )
        parser.add_argument(
            "--weekday", type=int, choices=range(7), default=0, help="0=Monday … 6=Sunday, for weekly"
        )
        parser.add_argument("--categories", default="", help="arXiv categories to follow, e.g. cs.RO,stat.ML")
        parser.add_argument(
            "--authors",
            default="",
            help='Authors to follow, separated by semicolons, e.g. "Grace Hopper; Y. Bengio"',
        )
        parser.add_argument("--confirmed", action="store_true", help="Skip the confirmation email")

    def handle(
        self,
        *args: object,
        email: str,
        topics: str,
        interests: str,
        frequency: str,
        weekday: int,
        confirmed: bool,
        categories: str,
        authors: str,
        **options: object,
    ) -> None:
        slugs = [slug.strip() for slug in topics.split(",") if slug.strip()]
        found = {topic.slug: topic for topic in Topic.objects.filter(slug__in=slugs, is_active=True)}
        unknown = [slug for slug in slugs if slug not in found]
        if unknown:
            raise CommandError(f"Unknown topic(s): {', '.join(unknown)}. Nothing was changed.")
        try:
            interests = InterestsField().clean(interests)
        except ValidationError as exc:
            raise CommandError(f"Invalid --interests: {' '.join(exc.messages)}") from exc
        try:
            category_list = clean_arxiv_categories(split_categories(categories))
        except ValidationError as exc:
            raise CommandError(
                f"Invalid --categories: {' '.join(exc.messages)} Nothing was changed."
            ) from exc
        try:
            author_list = clean_author_names(split_authors(authors))
        except ValidationError as exc:
            raise CommandError(f"Invalid --authors: {' '.join(exc.messages)} Nothing was changed.") from exc
        if not slugs and not interests and not category_list and not author_list:
            raise CommandError(
                "Give at least one topic (--topics), some --interests, --categories or --authors."
            )
        try:
            existing = subscriber_get_by_email(email=email)
            if existing is not None:
                raise CommandError(f"{existing.email} is already a subscriber ({existing.status}).")
            subscriber = subscriber_add(
                email=email,
                topics=found.values(),
                interests=interests,
                frequency=frequency,
                weekday=weekday,
                confirmed=confirmed,
                arxiv_categories=category_list,
                followed_authors=author_list,
            )
        except ValidationError as exc:
            raise CommandError(f"Invalid email: {' '.join(exc.messages)}") from exc
        state = "active" if confirmed else "pending; confirmation email sent"
        self.stdout.write(self.style.SUCCESS(f"Added {subscriber.email} (id {subscriber.pk}, {state})."))
