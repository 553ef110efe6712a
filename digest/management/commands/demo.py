"""The offline demo: bundled sample papers, a few readers, one night, emails in the outbox."""

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from digest.models import Delivery, Paper, Topic
from digest.services.ingest import papers_load_file
from subscribers.models import Subscriber
from subscribers.services import subscriber_add

SAMPLE = Path(settings.BASE_DIR) / "digest" / "sample_data" / "daily_papers.json"

# Readers with different tastes, so each gets a different digest.
DEMO_READERS = [
    {"email": "ada@example.org", "topics": ["reasoning", "alignment"], "interests": ""},
    {
        "email": "ben@example.org",
        "topics": ["multimodal", "image-generation", "video"],
        "interests": "video generation",
    },
    {
        "email": "chen@example.org",
        "topics": ["efficiency"],
        "interests": "speculative decoding\nquantization",
    },
    {"email": "dana@example.org", "topics": ["agents", "code", "retrieval-search"], "frequency": "weekly"},
    {"email": "eve@example.org", "topics": ["science-health"], "interests": "protein design"},
    {"email": "finn@example.org", "topics": ["robotics", "3d"], "interests": ""},
]


class Command(BaseCommand):
    help = "Load the bundled sample papers, add demo readers and run one night offline into the outbox."

    def handle(self, *args, **options):
        result = papers_load_file(path=SAMPLE)
        self.stdout.write(
            f"Sample papers: {result.created} new, {result.updated} updated, {result.unchanged} unchanged."
        )
        latest = Paper.objects.filter(featured_on__isnull=False).order_by("-featured_on").first()
        edition = latest.featured_on + timedelta(days=1)

        emails = []
        for spec in DEMO_READERS:
            emails.append(spec["email"])
            if Subscriber.objects.filter(email__iexact=spec["email"]).exists():
                continue
            subscriber_add(
                email=spec["email"],
                topics=Topic.objects.filter(slug__in=spec["topics"]),
                interests=spec.get("interests", ""),
                frequency=spec.get("frequency", "daily"),
                weekday=edition.weekday(),
                confirmed=True,
            )
        # The demo can be run again: its readers get this edition afresh.
        demo_readers = Subscriber.objects.filter(email__in=emails)
        Delivery.objects.filter(subscriber__in=demo_readers, edition=edition).delete()
        demo_readers.update(last_digest_at=None)

        call_command(
            "run_digest", date=edition.isoformat(), no_fetch=True, stdout=self.stdout, stderr=self.stderr
        )
        outbox = Path(settings.OUTBOX_DIR)
        sent = Delivery.objects.filter(subscriber__in=demo_readers, edition=edition).select_related(
            "subscriber"
        )
        self.stdout.write(f"\nDigests for {edition} (open the .eml files with any mail client):")
        for delivery in sent.order_by("subscriber__email"):
            self.stdout.write(f"  {delivery.subscriber.email:<20} {delivery.status:<8} {delivery.subject}")
        self.stdout.write(f"Outbox: {outbox}")
        admin_url = f"{settings.SITE_URL}/{settings.ADMIN_URL}"
        self.stdout.write(
            f"\nTo open the admin at {admin_url} (papers, readers, runs, previews), make yourself an "
            "account first:\n  .venv/bin/python manage.py createsuperuser"
        )
