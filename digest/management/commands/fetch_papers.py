"""Fetch (or load from a saved file) papers and store them with their topics."""

from __future__ import annotations

from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from digest.management.arguments import as_date, iso_date
from digest.services import IngestResult, papers_fetch, papers_load_file
from digest.sources import SourceError

SOURCE_CHOICES = ("hf", "hf-page", "arxiv")


class Command(BaseCommand):
    help = (
        "Fetch papers for a day (default: yesterday, UTC) or every day since a date, from the "
        "Hugging Face API (falling back to the papers page), the papers page or arXiv; or load a "
        "saved response with --from-file. Each day is stored whole or not at all."
    )

    def add_arguments(self, parser):
        when = parser.add_mutually_exclusive_group()
        when.add_argument("--date", type=iso_date, help="Day to fetch, YYYY-MM-DD (default: yesterday).")
        when.add_argument(
            "--since", type=iso_date, help="Fetch every day from this date up to yesterday, YYYY-MM-DD."
        )
        parser.add_argument("--source", choices=SOURCE_CHOICES, default="hf")
        parser.add_argument(
            "--from-file",
            metavar="PATH",
            help="A saved HF API JSON response, HF papers page or arXiv Atom feed; the format is detected.",
        )

    def handle(self, *args, **options):
        if options["from_file"]:
            return self._from_file(options["from_file"])
        yesterday = timezone.now().date() - timedelta(days=1)
        if options["since"]:
            start = as_date(options["since"])
            if start > yesterday:
                raise CommandError(f"--since {start} is after yesterday ({yesterday}).")
            days = [start + timedelta(days=n) for n in range((yesterday - start).days + 1)]
        else:
            days = [as_date(options["date"]) or yesterday]
        self._fetch_days(days, options["source"])

    def _from_file(self, path: str) -> None:
        try:
            result = papers_load_file(path=path)
        except SourceError as exc:
            raise CommandError(f"Nothing was stored. {exc}") from None
        self._report(result.source, result)

    def _fetch_days(self, days: list[date], source: str) -> None:
        totals: dict[str, IngestResult] = {}
        failures: list[str] = []
        progress = None
        if len(days) > 1:
            from tqdm import tqdm

            progress = tqdm(total=len(days), unit="day", file=self.stderr._out, disable=None)
        for day in days:
            if progress is not None:
                progress.set_description(day.isoformat())
            try:
                result = papers_fetch(day=day, source=source)
            except SourceError as exc:
                failures.append(f"{day.isoformat()}: {exc}")
                if len(days) == 1:
                    raise CommandError(f"Nothing was stored for {day.isoformat()}. {exc}") from None
            else:
                totals[result.source] = totals.get(result.source, IngestResult(source=result.source)) + result
                if len(days) == 1 and not result.total:
                    self.stdout.write(f"{result.source}: nothing new on {day.isoformat()}")
            if progress is not None:
                progress.update(1)
        if progress is not None:
            progress.close()
        for name, result in totals.items():
            self._report(name, result)
        if failures:
            raise CommandError(
                f"{len(failures)} of {len(days)} days failed and were not stored:\n" + "\n".join(failures)
            )

    def _report(self, source: str, result: IngestResult) -> None:
        self.stdout.write(self.style.SUCCESS(f"{source}: {result}"))
