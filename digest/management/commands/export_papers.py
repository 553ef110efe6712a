"""Print stored papers as JSON."""

from __future__ import annotations

import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from digest.selectors import papers_export


class Command(BaseCommand):
    help = "Print papers (all, or one featured day) as a JSON array, topics strongest first."

    def add_arguments(self, parser):
        parser.add_argument("--date", help="Only papers featured on this day, YYYY-MM-DD.")
        parser.add_argument("--format", choices=["json"], default="json")

    def handle(self, *args, **options):
        day = None
        if options["date"]:
            try:
                day = date.fromisoformat(options["date"])
            except ValueError:
                raise CommandError(f"not a date (YYYY-MM-DD): {options['date']!r}") from None
        self.stdout.write(json.dumps(papers_export(day=day), indent=2, ensure_ascii=False))
