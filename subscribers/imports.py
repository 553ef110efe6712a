"""Importing an existing list of subscribers from a CSV file.

Columns (a header row is required, names in any case and order): ``email``
(required), ``topics`` (slugs or names, separated by spaces, commas or
semicolons), ``interests`` (separated by commas, semicolons or line breaks),
``frequency`` (``daily``, the default, or ``weekly``) and ``weekday`` (for
weekly readers: 0-6 or a day's name, Monday by default). Other columns, such as
the ones the admin's CSV export adds, are ignored and named in the report.

What happens to each line:

* a malformed line (a bad address, an unknown topic, no topics and no
  interests, a bad frequency or weekday) is an error, and **any error means
  nothing is written**: the report lists every problem with its line number,
  so the file can be fixed and imported again as a whole;
* an address that appears twice in the file, that is already on the list (in
  any status: an unsubscribed reader is never signed up again by an import),
  or that is suppressed (bounced or complained) is skipped and reported;
* every other line becomes a subscriber, all in one transaction. Without
  ``consented`` each gets the double opt-in confirmation email and stays
  pending until they click it. With ``consented`` (the list's owner states the
  readers already opted in) they are active at once, and the required source
  note is stored on each as the evidence of that consent.
"""

import csv
import io
import re
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db.models.functions import Lower

from digest.models import Topic
from subscribers.addresses import normalize_email, validate_email_address
from subscribers.forms import InterestsField
from subscribers.models import Subscriber, SuppressionEvent
from subscribers.services import NewSubscriber, subscribers_add

COLUMNS = ("email", "topics", "interests", "frequency", "weekday")
MAX_ROWS = 50_000
MAX_BYTES = 10 * 1024 * 1024
SOURCE_MAX_LENGTH = 500
_SEPARATORS = re.compile(r"[\s,;]+")
_WEEKDAYS = {label.lower(): value for value, label in Subscriber.Weekday.choices}
_WEEKDAYS.update({label[:3].lower(): value for value, label in Subscriber.Weekday.choices})


class ImportFileError(Exception):
    """The file as a whole cannot be read (encoding, header, size); nothing was written."""


class Outcome:
    ADD = "add"
    DUPLICATE = "duplicate"
    EXISTS = "exists"
    SUPPRESSED = "suppressed"
    ERROR = "error"


@dataclass(frozen=True)
class ImportLine:
    line: int
    email: str
    outcome: str
    message: str


@dataclass
class ImportReport:
    lines: list[ImportLine] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    consented: bool = False
    written: bool = False

    def of(self, outcome: str) -> list[ImportLine]:
        return [line for line in self.lines if line.outcome == outcome]

    @property
    def errors(self) -> list[ImportLine]:
        return self.of(Outcome.ERROR)

    @property
    def skipped(self) -> list[ImportLine]:
        return [line for line in self.lines if line.outcome not in (Outcome.ADD, Outcome.ERROR)]

    @property
    def added(self) -> int:
        return len(self.of(Outcome.ADD)) if self.written else 0

    def summary(self) -> str:
        if self.errors:
            return (
                f"Nothing was imported: {len(self.errors)} line(s) have errors. Fix them and import the "
                "whole file again."
            )
        to_add = len(self.of(Outcome.ADD))
        state = "active (consent recorded)" if self.consented else "pending; confirmation emails queued"
        verb = f"Imported {to_add}" if self.written else f"Would import {to_add}"
        return f"{verb} subscriber(s), {state}; skipped {len(self.skipped)}."


@dataclass(frozen=True)
class _Row:
    line: int
    email: str
    topics: tuple[Topic, ...]
    interests: str
    frequency: str
    weekday: int


def subscribers_import(
    *, text: str, consented: bool = False, source: str = "", dry_run: bool = False
) -> ImportReport:
    """Check every line of the CSV text, then add the good new ones in one transaction
    (or none at all when any line is malformed). See the module's docstring."""
    source = " ".join(source.split())
    if consented and not source:
        raise ImportFileError(
            "Say where these readers gave their consent (the source note): it is stored as proof."
        )
    if len(source) > SOURCE_MAX_LENGTH:
        raise ImportFileError(f"Keep the source note under {SOURCE_MAX_LENGTH} characters.")
    report = ImportReport(consented=consented)
    rows = _check(text, report)
    if report.errors or dry_run:
        return report
    subscribers_add(
        people=[
            NewSubscriber(row.email, row.topics, row.interests, row.frequency, row.weekday) for row in rows
        ],
        confirmed=consented,
        consent_source=f"imported: {source}" if source else "imported",
    )
    report.written = True
    return report


def read_upload(data: bytes) -> str:
    """The text of an uploaded or saved CSV file (UTF-8, with or without a byte-order mark)."""
    if len(data) > MAX_BYTES:
        raise ImportFileError(f"The file is {len(data)} bytes, over the {MAX_BYTES}-byte limit.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"The file is not UTF-8 text (byte {exc.start}); save it as CSV UTF-8 and try again."
        ) from None


def _check(text: str, report: ImportReport) -> list[_Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="\0extra", restval=None)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise ImportFileError(f"The header row is not valid CSV: {exc}.") from None
    if not header:
        raise ImportFileError("The file is empty: it needs a header row with at least an email column.")
    names = [(name or "").strip().lower() for name in header]
    if "email" not in names:
        raise ImportFileError(f"No email column in the header ({', '.join(header)}).")
    doubled = sorted({name for name in names if names.count(name) > 1 and name in COLUMNS})
    if doubled:
        raise ImportFileError(f"The header has the column(s) {', '.join(doubled)} more than once.")
    report.ignored_columns = [raw for raw, name in zip(header, names, strict=True) if name not in COLUMNS]
    topics = _topic_lookup()

    parsed: list[tuple[int, dict[str, str | None], list[str]]] = []
    try:
        for record in reader:
            if len(parsed) >= MAX_ROWS:
                raise ImportFileError(f"The file has more than {MAX_ROWS} rows; split it into smaller files.")
            values = {name: record.get(raw) for raw, name in zip(header, names, strict=True)}
            problems = []
            if record.get("\0extra"):
                problems.append("more fields than the header has columns")
            if all(value in (None, "") for value in values.values()):
                continue  # a blank line
            parsed.append((reader.line_num, values, problems))
    except csv.Error as exc:
        raise ImportFileError(f"Line {reader.line_num} is not valid CSV: {exc}.") from None

    emails = [_normalised(values.get("email")) for _, values, _ in parsed]
    existing = _existing([email for email in emails if email])
    suppressed = _suppressed_events([email for email in emails if email])
    first_line: dict[str, int] = {}
    rows: list[_Row] = []
    for (line, values, problems), email in zip(parsed, emails, strict=True):
        row, row_problems = _row(line, values, email, topics)
        problems = problems + row_problems
        shown = email or (values.get("email") or "").strip()
        if problems:
            report.lines.append(ImportLine(line, shown, Outcome.ERROR, "; ".join(problems)))
            continue
        assert row is not None
        key = row.email.lower()
        if key in first_line:
            message = f"skipped: the same address as line {first_line[key]}"
            report.lines.append(ImportLine(line, row.email, Outcome.DUPLICATE, message))
            continue
        first_line[key] = line
        status = existing.get(key)
        if status == Subscriber.Status.SUPPRESSED or key in suppressed:
            message = "skipped: the address is suppressed (it bounced or complained) and is never mailed"
            report.lines.append(ImportLine(line, row.email, Outcome.SUPPRESSED, message))
        elif status is not None:
            label = Subscriber.Status(status).label.lower()
            report.lines.append(
                ImportLine(line, row.email, Outcome.EXISTS, f"skipped: already on the list ({label})")
            )
        else:
            report.lines.append(ImportLine(line, row.email, Outcome.ADD, "added"))
            rows.append(row)
    return rows


def _normalised(raw: str | None) -> str:
    try:
        email = normalize_email(raw or "")
        validate_email_address(email)
    except ValidationError:
        return ""
    return email


def _row(
    line: int, values: dict[str, str | None], email: str, topics: dict[str, Topic]
) -> tuple[_Row | None, list[str]]:
    problems: list[str] = []
    raw_email = (values.get("email") or "").strip()
    if not email:
        problems.append(f"not a valid email address: {raw_email!r}" if raw_email else "no email address")
    chosen: list[Topic] = []
    for word in _SEPARATORS.split(values.get("topics") or ""):
        if not word:
            continue
        topic = topics.get(word.lower())
        if topic is None:
            problems.append(f"unknown topic {word!r}")
        elif topic not in chosen:
            chosen.append(topic)
    try:
        interests = InterestsField().clean((values.get("interests") or "").replace(";", "\n"))
    except ValidationError as exc:
        problems.append(f"interests: {' '.join(exc.messages)}")
        interests = ""
    if (
        not chosen
        and not interests
        and not any(p.startswith(("unknown topic", "interests")) for p in problems)
    ):
        problems.append("no topics and no interests: give at least one")
    frequency = (values.get("frequency") or "").strip().lower() or Subscriber.Frequency.DAILY
    if frequency not in Subscriber.Frequency.values:
        problems.append(f"frequency must be daily or weekly, not {frequency!r}")
    weekday_raw = (values.get("weekday") or "").strip().lower()
    weekday = int(Subscriber.Weekday.MONDAY)
    if weekday_raw:
        if weekday_raw.isdigit() and int(weekday_raw) in Subscriber.Weekday.values:
            weekday = int(weekday_raw)
        elif weekday_raw in _WEEKDAYS:
            weekday = _WEEKDAYS[weekday_raw]
        else:
            problems.append(f"weekday must be 0-6 (Monday-Sunday) or a day's name, not {weekday_raw!r}")
    if problems:
        return None, problems
    return _Row(line, email, tuple(chosen), interests, frequency, weekday), []


def _topic_lookup() -> dict[str, Topic]:
    """Active topics by slug and by name, lower-cased."""
    found: dict[str, Topic] = {}
    for topic in Topic.objects.filter(is_active=True):
        found[topic.name.lower()] = topic
        found[topic.slug.lower()] = topic
    return found


def _existing(emails: list[str]) -> dict[str, str]:
    """Lower-cased address -> status, for the addresses already on the list."""
    lowered = sorted({email.lower() for email in emails})
    found: dict[str, str] = {}
    for start in range(0, len(lowered), 1000):
        batch = lowered[start : start + 1000]
        rows = (
            Subscriber.objects.annotate(email_lower=Lower("email"))
            .filter(email_lower__in=batch)
            .values_list("email_lower", "status")
        )
        found.update(dict(rows))
    return found


def _suppressed_events(emails: list[str]) -> set[str]:
    """Addresses with a hard bounce, complaint or rejection on record, subscriber or not."""
    lowered = sorted({email.lower() for email in emails})
    found: set[str] = set()
    for start in range(0, len(lowered), 1000):
        rows = (
            SuppressionEvent.objects.annotate(email_lower=Lower("email"))
            .filter(email_lower__in=lowered[start : start + 1000])
            .exclude(event_type="soft_bounce")
            .values_list("email_lower", flat=True)
        )
        found.update(rows)
    return found
