"""Batches: readers who share a rendered digest go to the ESP in one call."""

from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from digest.compose import CompiledDigest, DigestComposer, Reader, digest_headers, digest_message
from digest.models import Delivery, DigestRun
from digest.services.journal import JournalEntry
from digest.services.outcomes import compose_recording_outcome
from mail.build import message_domain
from mail.send import (
    PermanentSendError,
    TransientSendError,
    batch_outcome,
    refused_in_request,
    send_with_retries,
)

Status = Delivery.Status


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


def send_in_batches(
    *,
    rows,
    readers: dict[int, Reader],
    composer: DigestComposer,
    run: DigestRun,
    connection,
    esp_extra: dict,
    journal,
    updates: dict[int, dict],
    sent_subscribers: list[int],
    sleep: Callable[[float], None],
) -> TransientSendError | None:
    """Group the chunk's readers by compiled digest and send each group in calls
    of up to DIGEST_ESP_BATCH_SIZE recipients. Returns the transient error that
    stopped the chunk, if any; rows not sent stay without an outcome."""

    def flush(batch: _Batch) -> TransientSendError | None:
        sent = _send_batch(
            batch=batch, run=run, connection=connection, esp_extra=esp_extra, journal=journal, sleep=sleep
        )
        updates.update(sent.updates)
        sent_subscribers.extend(sent.sent_subscribers)
        return sent.error

    return _compose_and_flush(rows=rows, readers=readers, composer=composer, updates=updates, flush=flush)


def _compose_and_flush(*, rows, readers, composer, updates, flush) -> TransientSendError | None:
    size = batch_size()
    # Keyed by the compiled digest's identity; the batch holds a reference, so
    # the key cannot be reused while the batch waits.
    groups: dict[int, _Batch] = {}
    for delivery_id, subscriber_id, _ in rows:
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
            if error := flush(batch):
                return error
            batch = None
        if batch is None:
            batch = groups[id(compiled)] = _Batch(compiled)
        batch.members.append((delivery_id, subscriber_id, reader.email, values))
        batch.addresses.add(reader.email.lower())
        if len(batch.members) >= size:
            del groups[id(compiled)]
            if error := flush(batch):
                return error
        elif len(groups) > MAX_WAITING_BATCHES and (error := flush(groups.pop(next(iter(groups))))):
            # Readers come ordered by preferences, so the oldest group is
            # usually complete; sending it keeps memory flat.
            return error
    for batch in groups.values():
        if error := flush(batch):
            return error
    return None


def _send_batch(
    *,
    batch: _Batch,
    run: DigestRun,
    connection,
    esp_extra: dict,
    journal,
    sleep: Callable[[float], None],
) -> "_Sent":
    """Send one batch (retrying transient errors) and record what the ESP took
    in the journal at once. Outcomes come back for the chunk to write."""
    sent = _Sent()
    compiled = batch.compiled
    html, text = compiled.template()
    members = {
        address: (delivery_id, subscriber_id) for delivery_id, subscriber_id, address, _ in batch.members
    }
    merge_data = {address: values for _, _, address, values in batch.members}
    domain = message_domain()
    merge_headers = {
        address: digest_headers(
            unsubscribe_url=values["UNSUB"],
            edition=run.edition,
            delivery_id=delivery_id,
            domain=domain,
            frequency=compiled.frequency,
        )
        for delivery_id, _, address, values in batch.members
    }
    merge_metadata = {
        address: {"delivery_id": str(delivery_id)} for delivery_id, _, address, _ in batch.members
    }
    message = digest_message(
        to=batch.members[0][2], subject=compiled.subject, text=text, html=html, edition=run.edition
    )
    recipients = list(members)
    while recipients:
        message.to = recipients
        message.merge_data = {address: merge_data[address] for address in recipients}
        message.merge_headers = {address: merge_headers[address] for address in recipients}
        message.merge_metadata = {address: merge_metadata[address] for address in recipients}
        message.esp_extra = dict(esp_extra)
        try:
            send_with_retries(connection, message, sleep=sleep)
        except TransientSendError as exc:
            sent.error = exc
            return sent
        except PermanentSendError as exc:
            refused = refused_in_request(exc, recipients)
            if not refused:
                # The call itself was refused: every delivery in it fails with the reason.
                refused = dict.fromkeys(recipients, str(exc))
            for address, reason in refused.items():
                sent.updates[members[address][0]] = {"status": Status.FAILED, "error": reason[:500]}
            # The ESP named the recipients it refused; send the rest again.
            recipients = [address for address in recipients if address not in refused]
            continue
        outcome = batch_outcome(message)
        paper_ids = list(compiled.paper_ids)
        entries = {
            members[address][0]: JournalEntry(message_id, compiled.subject, paper_ids)
            for address, message_id in outcome.accepted.items()
        }
        journal.record_many(entries)
        sent_at = timezone.now()
        for address, message_id in outcome.accepted.items():
            delivery_id, subscriber_id = members[address]
            sent.updates[delivery_id] = {
                "status": Status.SENT,
                "esp_message_id": message_id,
                "sent_at": sent_at,
                "subject": compiled.subject,
                "paper_ids": paper_ids,
                "error": "",
            }
            sent.sent_subscribers.append(subscriber_id)
        for address, reason in outcome.refused.items():
            sent.updates[members[address][0]] = {"status": Status.FAILED, "error": reason[:500]}
        return sent
    return sent


@dataclass
class _Sent:
    updates: dict[int, dict] = field(default_factory=dict)
    sent_subscribers: list[int] = field(default_factory=list)
    error: TransientSendError | None = None
