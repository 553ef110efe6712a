"""Batches: readers who share a rendered digest go to the ESP in one call."""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from digest.compose import CompiledDigest, DigestComposer, Reader, digest_headers, digest_message
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
# Readers who get the same list share one rendered HTML and text with PBX<KEY>PBX
# placeholders. For an ESP whose anymail backend fills per-recipient values into
# the content without a template stored at the ESP, one API call carries the
# shared content once and each recipient's links as substitutions; the ESP still
# sends each recipient an individual message (one "personalization" each, so no
# one sees another's address). The payload shrinks from N copies of ~60 KB to one
# copy plus N small dicts, and N HTTP exchanges become one.

# anymail backend -> the esp_extra that makes its merge fields our placeholders.
BATCH_BACKENDS: dict[str, dict] = {
    "anymail.backends.sendgrid.EmailBackend": {"merge_field_format": "PBX{}PBX"},
}
MAX_BATCH_SIZE = 1000  # SendGrid's limit on personalizations per call
# Distinct digests a chunk holds while their batches fill; each holds its HTML.
MAX_WAITING_BATCHES = 32


def batch_esp_extra(backend: str | None = None) -> dict | None:
    """The esp_extra for batch sends through this backend, or None to send one by one.

    DIGEST_ESP_BATCH: "auto" batches when the backend is known to support it,
    "off" never does, "on" requires it (a misconfiguration fails loudly rather
    than falling back to the slower path)."""
    backend = backend or settings.EMAIL_BACKEND
    mode = settings.DIGEST_ESP_BATCH
    if mode == "off":
        return None
    extra = BATCH_BACKENDS.get(backend)
    if extra is None and mode == "on":
        raise ImproperlyConfigured(
            f"DIGEST_ESP_BATCH=on, but {backend} cannot personalise a batch; "
            f"batching works with: {', '.join(sorted(BATCH_BACKENDS))}"
        )
    return dict(extra) if extra is not None else None


def batch_size() -> int:
    return max(1, min(settings.DIGEST_ESP_BATCH_SIZE, MAX_BATCH_SIZE))


@dataclass
class _Batch:
    compiled: CompiledDigest
    # delivery id, subscriber id, address, placeholder values
    members: list[tuple[int, int, str, dict[str, str]]] = field(default_factory=list)
    addresses: set[str] = field(default_factory=set)


def batch_jobs(
    *, rows, readers: dict[int, Reader], composer: DigestComposer, run: DigestRun, updates: dict[int, dict]
) -> Iterator[SendJob]:
    """Group the chunk's readers by compiled digest and yield one ESP call of up
    to DIGEST_ESP_BATCH_SIZE recipients per group as it fills. Readers with
    nothing to read, or whose digest cannot be built, get their outcome in
    `updates` and no call."""
    size = batch_size()
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
            yield _batch_job(batch, run)
            batch = None
        if batch is None:
            batch = groups[id(compiled)] = _Batch(compiled)
        batch.members.append((delivery_id, subscriber_id, reader.email, values))
        batch.addresses.add(reader.email.lower())
        if len(batch.members) >= size:
            del groups[id(compiled)]
            yield _batch_job(batch, run)
        elif len(groups) > MAX_WAITING_BATCHES:
            # Readers come ordered by preferences, so the oldest group is
            # usually complete; sending it keeps memory flat.
            yield _batch_job(groups.pop(next(iter(groups))), run)
    for batch in groups.values():
        yield _batch_job(batch, run)


def _batch_job(batch: _Batch, run: DigestRun) -> SendJob:
    """One message for the whole group: the shared HTML and text once, and per
    recipient only the values, headers and delivery id."""
    compiled = batch.compiled
    html, text = compiled.template()
    domain = message_domain()
    message = digest_message(
        to=batch.members[0][2], subject=compiled.subject, text=text, html=html, edition=run.edition
    )
    message.to = [address for _, _, address, _ in batch.members]
    message.merge_data = {address: values for _, _, address, values in batch.members}
    message.merge_headers = {
        address: digest_headers(
            unsubscribe_url=values["UNSUB"], edition=run.edition, delivery_id=delivery_id, domain=domain
        )
        for delivery_id, _, address, values in batch.members
    }
    message.merge_metadata = {
        address: {"delivery_id": str(delivery_id)} for delivery_id, _, address, _ in batch.members
    }
    return SendJob(
        message=message,
        members=[
            Member(delivery_id, subscriber_id, address)
            for delivery_id, subscriber_id, address, _ in batch.members
        ],
        subject=compiled.subject,
        paper_ids=list(compiled.paper_ids),
    )


def send_batch_job(
    job: SendJob,
    *,
    connection,
    esp_extra: dict,
    limiter: RateLimiter | None,
    should_stop: Callable[[], bool],
    sleep: Callable[[float], None],
) -> JobOutcome:
    """Send one batch (waiting for its turn in the rate limit, retrying
    transient errors). A call refused because of some recipients fails just
    those and sends the rest again; a call refused for anything else fails
    them all."""
    outcome = JobOutcome()
    message = job.message
    members = {member.address: member for member in job.members}
    merge_data, merge_headers, merge_metadata = (
        message.merge_data,
        message.merge_headers,
        message.merge_metadata,
    )
    recipients = list(members)
    while recipients:
        message.to = recipients
        message.merge_data = {address: merge_data[address] for address in recipients}
        message.merge_headers = {address: merge_headers[address] for address in recipients}
        message.merge_metadata = {address: merge_metadata[address] for address in recipients}
        message.esp_extra = dict(esp_extra)
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
            refused = refused_in_request(exc, recipients)
            if not refused:
                # The call itself was refused: every delivery in it fails with the reason.
                refused = dict.fromkeys(recipients, str(exc))
            for address, reason in refused.items():
                outcome.updates[members[address].delivery_id] = {
                    "status": Status.FAILED,
                    "error": reason[:500],
                }
            # The ESP named the recipients it refused; send the rest again.
            recipients = [address for address in recipients if address not in refused]
            continue
        if answered:
            result = batch_outcome(message)
            accepted, refused_now = result.accepted, result.refused
        else:
            accepted, refused_now = dict.fromkeys(recipients, ""), {}
        for address, message_id in accepted.items():
            delivery_id = members[address].delivery_id
            outcome.journal[delivery_id] = JournalEntry(message_id, job.subject, job.paper_ids)
            outcome.updates[delivery_id] = accepted_update(
                message_id=message_id, subject=job.subject, paper_ids=job.paper_ids
            )
        for address, reason in refused_now.items():
            outcome.updates[members[address].delivery_id] = {"status": Status.FAILED, "error": reason[:500]}
        return outcome
    return outcome
