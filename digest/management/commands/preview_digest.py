"""Print the digest one subscriber got or would get, without sending or storing anything."""

import json
from collections.abc import Callable
from datetime import date

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from digest.management.arguments import as_date, iso_date
from digest.services.preview import Preview, digest_preview, preview_sections
from subscribers.models import Subscriber


def render_html(preview: Preview) -> str:
    return preview.digest.html if preview.digest else ""


def render_text(preview: Preview) -> str:
    return f"Subject: {preview.digest.subject}\n\n{preview.digest.text}" if preview.digest else ""


def render_eml(preview: Preview) -> str:
    message = preview.message()
    return message.message().as_string() if message else ""


def render_json(preview: Preview) -> str:
    """The ranking as data: sections, items, scores and reasons."""
    return json.dumps(preview_sections(preview, edition=preview.edition), indent=2, ensure_ascii=False)


# One renderer per --format; each turns a preview into what goes to stdout.
RENDERERS: dict[str, Callable[[Preview], str]] = {
    "html": render_html,
    "text": render_text,
    "eml": render_eml,
    "json": render_json,
}


class Command(BaseCommand):
    help = (
        "Print the digest a subscriber got for an edition (rebuilt from the delivery's recorded papers) "
        "or would get (ranked as the night would): HTML, text or a whole .eml message. When nothing "
        "goes out, says why on stderr. `--format json` prints the ranking: sections, items, scores "
        "and reasons."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--format", choices=tuple(RENDERERS), default="text")
        parser.add_argument("--date", type=iso_date, help="Edition date, YYYY-MM-DD (default: today, UTC).")

    def handle(self, *args: object, **options: object) -> None:
        preview = self.preview(str(options["email"]), options["date"])  # type: ignore[arg-type]
        self.stderr.write(preview.summary)
        for note in preview.notes:
            self.stderr.write(f"  {note}")
        output = RENDERERS[str(options["format"])](preview)
        if output:
            self.stdout.write(output)

    def preview(self, email: str, date_option: "date | str | None") -> Preview:
        subscriber = Subscriber.objects.filter(email__iexact=email.strip()).first()
        if subscriber is None:
            raise CommandError(f"No subscriber with the address {email!r}.")
        edition = as_date(date_option) or timezone.now().date()
        return digest_preview(subscriber=subscriber, edition=edition)
