"""Print the digest one subscriber would get, without sending or storing anything."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from digest.management.arguments import as_date, iso_date
from digest.services.preview import digest_preview, preview_sections
from subscribers.models import Subscriber


class Command(BaseCommand):
    help = (
        "Print the digest a subscriber would get for an edition: HTML, text, a whole .eml message, "
        "or the ranking as JSON (sections, items, scores and reasons)."
    )

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--format", choices=("html", "text", "eml", "json"), default="text")
        parser.add_argument("--date", type=iso_date, help="Edition date, YYYY-MM-DD (default: today, UTC).")

    def handle(self, *args, **options):
        subscriber = Subscriber.objects.filter(email__iexact=options["email"].strip()).first()
        if subscriber is None:
            raise CommandError(f"No subscriber with the address {options['email']!r}.")
        edition = as_date(options["date"]) or timezone.now().date()
        preview = digest_preview(subscriber=subscriber, edition=edition)
        if options["format"] == "json":
            self.stdout.write(
                json.dumps(preview_sections(preview, edition=edition), indent=2, ensure_ascii=False)
            )
            return
        if preview.digest is None:
            self.stderr.write(
                f"Nothing passes {subscriber.email}'s relevance gate on {edition}: no email would be sent."
            )
            return
        if options["format"] == "html":
            self.stdout.write(preview.digest.html)
        elif options["format"] == "text":
            self.stdout.write(f"Subject: {preview.digest.subject}\n\n{preview.digest.text}")
        else:
            self.stdout.write(preview.message().message().as_string())
