"""Batches: readers who share a rendered digest go to the ESP in one call."""

import copy
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from anymail.message import AnymailMessage
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from digest.compose import (
    PBX_SYNTAX,
    CompiledDigest,
    DigestComposer,
    PlaceholderSyntax,
    Reader,
    digest_headers,
    digest_message,
)
from digest.models import Delivery, DigestRun
from digest.services.journal import JournalEntry
from digest.services.outcomes import (
    JobOutcome,
    Member,
    SendJob,
    accepted_update,
    compose_recording_outcome,
    uncertain_update,
)
from mail.build import message_domain
from mail.ratelimit import RateLimiter
from mail.send import (
    PermanentSendError,
    TransientSendError,
    UncertainSendError,
    batch_outcome,
    refused_in_request,
    send_with_retries,
)

Status = Delivery.Status
logger = logging.getLogger(__name__)


# --- Batches: render once, personalise at the ESP ----------------------------------------
#
# Readers who get the same list share one rendered HTML and text with a placeholder
# wherever their own links go. For an ESP whose anymail backend fills per-recipient
# values into the content without a template stored at the ESP, one API call
# carries the shared content once and each recipient's links as substitutions; the
# ESP still sends each recipient an individual message (so no one sees another's
# address). The payload shrinks from N copies of ~60 KB to one copy plus N small
# dicts, and N HTTP exchanges become one.

# A recipient-level refusal the ESP did not attribute: split the call to find the address.
SPLIT = "split"
Refusals = Callable[[PermanentSendError, list[str]], "dict[str, str] | str"]


@dataclass(frozen=True)
class BatchESP:
    """What one ESP needs for batches: its placeholder syntax, its limit on
    recipients per call, the esp_extra that makes anymail send our content as
    a template, and how to read a call it refused because of some recipients."""

    name: str
    syntax: PlaceholderSyntax
    max_batch: int
    esp_extra: dict
    refusals: Refusals


def _sendgrid_refusals(error: PermanentSendError, recipients: list[str]) -> dict[str, str] | str:
    # SendGrid answers 400 with one error per bad address, naming its personalization.
    return refused_in_request(error, recipients)


def _unnamed_refusals(*markers: str) -> Refusals:
    """For ESPs that refuse a whole call for one bad address without naming it
    (Mailgun's "'to' parameter is not a valid address", SparkPost's invalid
    recipients): when the reason is about recipients, the call is split in
    halves until the bad addresses stand alone; anything else fails the call."""

    def refusals(error: PermanentSendError, recipients: list[str]) -> dict[str, str] | str:
        text = str(error).lower()
        return SPLIT if any(marker in text for marker in markers) else {}

    return refusals


def _no_refusals(error: PermanentSendError, recipients: list[str]) -> dict[str, str] | str:
    # Mailjet reports a refused recipient in its own message's result (read by
    # batch_outcome); an error for the whole call is about the call.
    return {}


SENDGRID = BatchESP(
    name="sendgrid",
    syntax=PBX_SYNTAX,
    max_batch=1000,
    esp_extra={"merge_field_format": "PBX{}PBX"},
    refusals=_sendgrid_refusals,
)
MAILGUN = BatchESP(
    name="mailgun",
    syntax=PlaceholderSyntax("mailgun", "%recipient.", "%", reserved=("%recipient.",)),
    max_batch=1000,
    esp_extra={},
    refusals=_unnamed_refusals("not a valid address", "invalid address"),
)
MAILJET = BatchESP(
    name="mailjet",
    # Template language is on for the whole call: "{%" opens its blocks as well.
    syntax=PlaceholderSyntax("mailjet", "{{var:", "}}", reserved=("{{", "{%")),
    max_batch=50,
    esp_extra={"Globals": {"TemplateLanguage": True}},
    refusals=_no_refusals,
)
SPARKPOST = BatchESP(
    name="sparkpost",
    # Triple braces insert the value as is; ours are our own URLs and tokens.
    syntax=PlaceholderSyntax("sparkpost", "{{{", "}}}", reserved=("{{",)),
    max_batch=1000,
    esp_extra={},
    refusals=_unnamed_refusals("recipient"),
)

# anymail backend -> how it batches. Backends missing here send one message per reader.
BATCH_BACKENDS: dict[str, BatchESP] = {
    "anymail.backends.sendgrid.EmailBackend": SENDGRID,
    "anymail.backends.mailgun.EmailBackend": MAILGUN,
    "anymail.backends.mailjet.EmailBackend": MAILJET,
    "anymail.backends.sparkpost.EmailBackend": SPARKPOST,
}
MAX_BATCH_SIZE = max(esp.max_batch for esp in BATCH_BACKENDS.values())
# Distinct digests a chunk holds while their batches fill; each holds its HTML.
MAX_WAITING_BATCHES = 8


def batch_esp(backend: str | None = None) -> BatchESP | None:
    """How to batch through this backend, or None to send one by one.

    DIGEST_ESP_BATCH: "auto" batches when the backend is known to support it,
    "off" never does, "on" requires it (a misconfiguration fails loudly rather
    than falling back to the slower path)."""
    backend = backend or settings.EMAIL_BACKEND
    mode = settings.DIGEST_ESP_BATCH
    if mode == "off":
        return None
    esp = BATCH_BACKENDS.get(backend)
    if esp is None and mode == "on":
        raise ImproperlyConfigured(
            f"DIGEST_ESP_BATCH=on, but {backend} cannot personalise a batch; "
            f"batching works with: {', '.join(sorted(BATCH_BACKENDS))}"
        )
    return esp


def batch_esp_extra(backend: str | None = None) -> dict | None:
    """The esp_extra for batch sends through this backend, or None to send one by one."""
    esp = batch_esp(backend)
    return dict(esp.esp_extra) if esp is not None else None


def batch_size(esp: BatchESP = SENDGRID) -> int:
    return max(1, min(settings.DIGEST_ESP_BATCH_SIZE, esp.max_batch))


@dataclass
class _Batch:
    compiled: CompiledDigest
    # delivery id, subscriber id, address, placeholder values
    members: list[tuple[int, int, str, dict[str, str]]] = field(default_factory=list)
    addresses: set[str] = field(default_factory=set)


@dataclass
class BatchJob(SendJob):
    """One batch call, and what it takes to build a smaller call from it: the
    shared digest, each recipient's values, headers and metadata."""

    compiled: CompiledDigest
    esp: BatchESP
    edition: date
    merge_data: dict[str, dict[str, str]] = field(default_factory=dict)
    merge_headers: dict[str, dict[str, str]] = field(default_factory=dict)
    merge_metadata: dict[str, dict[str, str]] = field(default_factory=dict)

    def message_for(self, recipients: list[str]) -> AnymailMessage:
        """The message for a call to these recipients (all of the batch, or part
        of it after a refusal split it)."""
        esp = self.esp
        subject = esp.syntax.neutralise(self.compiled.subject)
        if len(recipients) == 1:
            # One recipient: filled in here and sent as a plain message, since some
            # backends drop per-recipient data on a batch of one (anymail's Mailjet).
            address = recipients[0]
            html, text = self.compiled.personalise(self.merge_data[address], esp.syntax)
            return digest_message(
                to=address,
                subject=subject,
                text=text,
                html=html,
                edition=self.edition,
                headers=self.merge_headers[address],
                metadata=self.merge_metadata[address],
            )
        if recipients == [member.address for member in self.members] and self.message is not None:
            return self.message
        return self._batch_message(recipients)

    def _batch_message(self, recipients: list[str]) -> AnymailMessage:
        html, text = self.compiled.template(self.esp.syntax)
        message = digest_message(
            to=recipients[0],
            subject=self.esp.syntax.neutralise(self.compiled.subject),
            text=text,
            html=html,
            edition=self.edition,
        )
        message.to = list(recipients)
        message.merge_data = {address: self.merge_data[address] for address in recipients}
        message.merge_headers = {address: self.merge_headers[address] for address in recipients}
        message.merge_metadata = {address: self.merge_metadata[address] for address in recipients}
        message.esp_extra = copy.deepcopy(self.esp.esp_extra)
        return message


def batch_jobs(
    *,
    rows: list[tuple],
    readers: dict[int, Reader],
    composer: DigestComposer,
    run: DigestRun,
    updates: dict[int, dict],
    esp: BatchESP = SENDGRID,
) -> Iterator[SendJob]:
    """Group the chunk's readers by compiled digest and yield one ESP call of up
    to DIGEST_ESP_BATCH_SIZE recipients (and the ESP's own limit) per group as
    it fills. Readers with nothing to read, or whose digest cannot be built,
    get their outcome in `updates` and no call."""
    size = batch_size(esp)
    # Keyed by the compiled digest's identity; the batch holds a reference, so
    # the key cannot be reused while the batch waits.
    groups: dict[int, _Batch] = {}
    for delivery_id, subscriber_id, *_ in rows:
        if delivery_id in updates:
            continue
        reader = readers[delivery_id]

        def compiled_with_values(reader=reader):
            compiled = composer.compiled_for(reader)
            return None if compiled is None else (compiled, composer.personal_values(reader, compiled))

        composed = compose_recording_outcome(delivery_id, updates, compiled_with_values)
        if composed is None:
            continue
        compiled, values = composed
        batch = groups.get(id(compiled))
        if batch is not None and reader.email.lower() in batch.addresses:
            # The same address twice in one call would merge two messages into one.
            del groups[id(compiled)]
            yield _batch_job(batch, run, esp)
            batch = None
        if batch is None:
            batch = groups[id(compiled)] = _Batch(compiled)
        batch.members.append((delivery_id, subscriber_id, reader.email, values))
        batch.addresses.add(reader.email.lower())
        if len(batch.members) >= size:
            del groups[id(compiled)]
            yield _batch_job(batch, run, esp)
        elif len(groups) > MAX_WAITING_BATCHES:
            # Readers come ordered by preferences, so the oldest group is
            # usually complete; sending it keeps memory flat.
            yield _batch_job(groups.pop(next(iter(groups))), run, esp)
    for batch in groups.values():
        yield _batch_job(batch, run, esp)


def _batch_job(batch: _Batch, run: DigestRun, esp: BatchESP) -> BatchJob:
    """One call for the whole group: the shared HTML and text once, and per
    recipient only the values, headers and delivery id."""
    compiled = batch.compiled
    domain = message_domain()
    job = BatchJob(
        message=None,
        members=[
            Member(delivery_id, subscriber_id, address)
            for delivery_id, subscriber_id, address, _ in batch.members
        ],
        subject=compiled.subject,
        paper_ids=list(compiled.paper_ids),
        compiled=compiled,
        esp=esp,
        edition=run.edition,
        merge_data={address: values for _, _, address, values in batch.members},
        merge_headers={
            address: digest_headers(
                unsubscribe_url=values["UNSUB"],
                edition=run.edition,
                delivery_id=delivery_id,
                domain=domain,
                frequency=compiled.frequency,
            )
            for delivery_id, _, address, values in batch.members
        },
        merge_metadata={
            address: {"delivery_id": str(delivery_id)} for delivery_id, _, address, _ in batch.members
        },
    )
    # Built here, in the composing thread; a sender thread only builds the smaller
    # calls a refusal splits it into.
    job.message = job.message_for([member.address for member in job.members])
    return job


def send_batch_job(
    job: BatchJob,
    *,
    connection: Any,
    limiter: RateLimiter | None,
    should_stop: Callable[[], bool],
    sleep: Callable[[float], None],
) -> JobOutcome:
    """Send one batch (waiting for its turn in the rate limit, retrying
    transient errors). A call refused because of recipients the ESP names fails
    just those and sends the rest again; one refused for recipients it does not
    name (Mailgun, SparkPost) is split in halves until the bad addresses stand
    alone; a call refused for anything else fails them all."""
    outcome = JobOutcome()
    esp = job.esp
    members = {member.address: member for member in job.members}

    def fail(address: str, reason: str) -> None:
        outcome.updates[members[address].delivery_id] = {"status": Status.FAILED, "error": reason[:500]}

    # Calls still to make; a refusal that names no address splits its call in two.
    pending = [list(members)]
    while pending:
        recipients = pending.pop()
        message = job.message_for(recipients)
        try:
            answered = send_with_retries(
                connection, message, sleep=sleep, limiter=limiter, should_stop=should_stop
            )
        except UncertainSendError as exc:
            # No message search for batch ESPs: what happens to these follows DIGEST_UNCERTAIN.
            logger.warning(
                "batch of %s: %s; DIGEST_UNCERTAIN=%s", len(recipients), exc, settings.DIGEST_UNCERTAIN
            )
            outcome.error = exc
            ids = [members[address].delivery_id for address in recipients]
            if settings.DIGEST_UNCERTAIN == "resend":
                outcome.tried = ids
            else:
                outcome.updates.update({delivery_id: uncertain_update(str(exc)) for delivery_id in ids})
            return outcome
        except TransientSendError as exc:
            outcome.error = exc
            if not exc.rate_limited:
                outcome.tried = [members[address].delivery_id for address in recipients]
            return outcome
        except PermanentSendError as exc:
            refused = esp.refusals(exc, recipients)
            if refused == SPLIT and len(recipients) > 1:
                middle = len(recipients) // 2
                pending += [recipients[middle:], recipients[:middle]]
                continue
            if not isinstance(refused, dict) or not refused:
                # The call itself was refused (or its one recipient): each delivery fails with the reason.
                refused = dict.fromkeys(recipients, str(exc))
            for address, reason in refused.items():
                fail(address, reason)
            # The ESP named the recipients it refused; send the rest again.
            rest = [address for address in recipients if address not in refused]
            if rest:
                pending.append(rest)
            continue
        if answered:
            result = batch_outcome(message)
            accepted, refused_now = result.accepted, result.refused
            note = _unattributed_rejections(message)
        else:
            # Accepted with an answer we could not read: sent, without message ids.
            accepted, refused_now, note = dict.fromkeys(recipients, ""), {}, ""
        for address, message_id in accepted.items():
            delivery_id = members[address].delivery_id
            outcome.journal[delivery_id] = JournalEntry(message_id, job.subject, job.paper_ids)
            update = accepted_update(message_id=message_id, subject=job.subject, paper_ids=job.paper_ids)
            if note:
                update["error"] = note
            outcome.updates[delivery_id] = update
        for address, reason in refused_now.items():
            fail(address, reason)
    return outcome


def _unattributed_rejections(message) -> str:
    """SparkPost counts the recipients it rejected without naming them; anymail
    then reports every recipient's status as "unknown". The accepted ones went
    out and cannot be sent again, so all are recorded as sent with this note;
    the ESP's webhook names the rejected ones (a bounce or rejection event,
    which suppresses the address)."""
    status = getattr(message, "anymail_status", None)
    if status is None or "unknown" not in (status.status or set()):
        return ""
    return "the ESP rejected some recipients of this call without naming them; see its webhook events"
