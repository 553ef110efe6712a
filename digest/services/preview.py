"""Compose without sending: previews for one reader and dry runs of a whole night."""

from dataclasses import dataclass, field, replace
from datetime import date

from digest.compose import DigestComposer, PersonalDigest, digest_message
from digest.models import Delivery
from digest.ranking import RankedItem
from digest.selectors import readers_for_deliveries
from digest.services.plan import due_subscribers
from subscribers.models import Subscriber


@dataclass
class Preview:
    subscriber: Subscriber
    digest: PersonalDigest | None
    ranked: list[RankedItem]
    titles: dict[int, str]
    edition: date

    def message(self, to: str | None = None):
        """The message as it would be sent, or None when nothing matched."""
        if self.digest is None:
            return None
        return digest_message(
            to=to or self.subscriber.email,
            subject=self.digest.subject,
            text=self.digest.text,
            html=self.digest.html,
            edition=self.edition,
            headers=self.digest.headers,
        )


def digest_preview(*, subscriber: Subscriber, edition: date, as_test: bool = False) -> Preview:
    """What this subscriber would get for this edition, whatever their status.

    With as_test, the personal links point at no one, so a test copy sent to a
    colleague cannot unsubscribe or re-rank the real reader."""
    composer = DigestComposer.for_edition(edition)
    readers, _ = readers_for_deliveries(edition=edition, rows=[(0, subscriber.pk, 0)], require_active=False)
    reader = readers[0]
    if as_test:
        reader = replace(reader, subscriber_id=0, token_version=0)
    return Preview(
        subscriber=subscriber,
        digest=composer.message_parts(reader),
        ranked=composer.ranked_for(reader),
        titles={paper_id: view.title for paper_id, view in composer.papers.items()},
        edition=edition,
    )


@dataclass
class DryRunReport:
    due: int = 0
    would_send: int = 0
    empty: int = 0
    groups: int = 0
    samples: list[str] = field(default_factory=list)


def digest_dry_run(*, edition: date, only_email: str | None = None, chunk_size: int = 1000) -> DryRunReport:
    """Rank and render every due digest, writing nothing."""
    composer = DigestComposer.for_edition(edition)
    composer.render_cache_size = None  # every distinct list once, so `groups` counts them
    report = DryRunReport()
    subjects: set[str] = set()
    ids = list(
        due_subscribers(edition=edition, only_email=only_email).order_by("id").values_list("id", flat=True)
    )
    already_planned = set(
        Delivery.objects.filter(edition=edition, subscriber_id__in=ids).values_list(
            "subscriber_id", flat=True
        )
    )
    ids = [i for i in ids if i not in already_planned]
    for start in range(0, len(ids), chunk_size):
        rows = [(subscriber_id, subscriber_id, 0) for subscriber_id in ids[start : start + chunk_size]]
        readers, _ = readers_for_deliveries(edition=edition, rows=rows)
        for reader in readers.values():
            report.due += 1
            compiled = composer.compiled_for(reader)
            if compiled is None:
                report.empty += 1
                continue
            report.would_send += 1
            if compiled.subject not in subjects and len(report.samples) < 10:
                report.samples.append(f"{reader.email}: {compiled.subject}")
            subjects.add(compiled.subject)
    report.groups = composer.lists_assembled
    return report
