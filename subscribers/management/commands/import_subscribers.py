"""Import an existing list of subscribers from a CSV file."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from subscribers.imports import ImportFileError, ImportReport, read_upload, subscribers_import


class Command(BaseCommand):
    help = (
        "Import subscribers from a CSV file with the columns email, topics, interests, frequency (and "
        "optionally weekday). Each new reader gets the double opt-in email, or, with --consented and "
        "--source, is active at once with that note kept as proof of consent. Duplicates, addresses "
        "already on the list and suppressed ones are skipped and reported; if any line is malformed, "
        "nothing is imported."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="Path to the CSV file (UTF-8), with a header row.")
        parser.add_argument(
            "--consented",
            action="store_true",
            help="These readers already opted in elsewhere: store them as confirmed, without an email.",
        )
        parser.add_argument(
            "--source",
            default="",
            help='Where and how they consented, stored on each, e.g. "NeurIPS 2026 booth sign-up sheet".',
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Check the file and report; write nothing."
        )

    def handle(self, *args: object, **options: object) -> None:
        path = Path(str(options["file"]))
        try:
            text = read_upload(path.read_bytes())
            report = subscribers_import(
                text=text,
                consented=bool(options["consented"]),
                source=str(options["source"]),
                dry_run=bool(options["dry_run"]),
            )
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}. Nothing was imported.") from None
        except ImportFileError as exc:
            raise CommandError(f"{exc} Nothing was imported.") from None
        self.report(report)
        if report.errors:
            raise CommandError(report.summary())
        self.stdout.write(self.style.SUCCESS(report.summary()))

    def report(self, report: ImportReport) -> None:
        if report.ignored_columns:
            self.stdout.write(f"Ignored columns: {', '.join(report.ignored_columns)}")
        for line in sorted(report.errors + report.skipped, key=lambda found: found.line):
            self.stdout.write(f"line {line.line}: {line.email or '(no address)'}: {line.message}")
