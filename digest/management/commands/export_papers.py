"""Print stored papers as JSON."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from digest.management.arguments import as_date, iso_date
from digest.selectors import papers_export


class Command(BaseCommand):
    help = "Print papers (all, or one featured day) as a JSON array, topics strongest first."

    def add_arguments(self, parser):
        parser.add_argument("--date", type=iso_date, help="Only papers featured on this day, YYYY-MM-DD.")
        parser.add_argument("--format", choices=["json"], default="json")

    def handle(self, *args, **options):
        self.stdout.write(
            json.dumps(papers_export(day=as_date(options["date"])), indent=2, ensure_ascii=False)
        )
