import argparse
from datetime import date

from django.core.management.base import CommandError


def iso_date(value: str) -> date:
    """argparse type for YYYY-MM-DD options; a bad value becomes a clear error."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def as_date(value: date | str | None) -> date | None:
    """Options passed to call_command() as keywords skip argparse: accept both forms."""
    if value is None or isinstance(value, date):
        return value
    try:
        return iso_date(value)
    except argparse.ArgumentTypeError as exc:
        raise CommandError(str(exc)) from None
