"""Compose without sending: previews for one reader and dry runs of a whole night.

A preview tells the truth about one reader and edition:

* an edition they were sent is rebuilt from what the delivery recorded (its
  papers, in their order, and its subject), not ranked again: ranking again
  would use a window that starts at the send itself and find nothing;
* for an edition not sent, it ranks the way the night would, and when nothing
  would go out it names the cause: not subscribed, not due that day, no topics
  or interests, no papers in the window, all below the gate, all sent before.
"""

from dataclasses import dataclass, field, replace
from datetime import date, timedelta

from anymail.message import AnymailMessage

from digest.compose import (
    DigestComposer,
    PersonalDigest,
    Reader,
    digest_headers,
    digest_message,
    window_start,
)
from digest.models import Delivery, Paper
from digest.ranking import Candidate, Match, Preferences, RankedItem, Ranker
from digest.selectors import readers_for_deliveries
from digest.services.plan import due_subscribers
from subscribers.models import Subscriber

TRENDING_REASON = ("Trending: nothing matched your interests today",)


class Outcome:
    """What the preview shows: a sent digest, one that would go, or nothing and why."""

    SENT = "sent"
    WOULD_SEND = "would_send"
    NOTHING = "nothing"


@dataclass
class Preview:
    subscriber: Subscriber
    digest: PersonalDigest | None
    ranked: list[RankedItem]
    titles: dict[int, str]
    edition: date
    outcome: str = Outcome.WOULD_SEND
    delivery: Delivery | None = None
    # Why nothing goes (or went) out, or what stands between this digest and the reader.
    reasons: list[str] = field(default_factory=list)
    # Facts worth knowing beside the digest (the window, papers hidden since it was sent).
    notes: list[str] = field(default_factory=list)
    window: tuple[date, date] | None = None
    also_trending: list[RankedItem] = field(default_factory=list)
    arxiv_ids: dict[int, str] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """One line for the top of the page or the command's stderr."""
        email = self.subscriber.email
        if self.outcome == Outcome.SENT and self.delivery is not None:
            when = f" on {self.delivery.sent_at:%Y-%m-%d %H:%M} UTC" if self.delivery.sent_at else ""
            return f"Sent to {email}{when}: {self.delivery.subject or (self.digest and self.digest.subject)}"
        if self.outcome == Outcome.NOTHING:
            return f"Nothing goes to {email} for {self.edition}: " + " ".join(self.reasons)
        if self.reasons:
            return f"Not sent to {email} for {self.edition}: " + " ".join(self.reasons)
        return f"{email} would get this digest for {self.edition}."

    def message(self, to: str | None = None) -> AnymailMessage | None:
        """The message as it was or would be sent, or None when there is none."""
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
    """What this subscriber got (a sent edition) or would get (any other) for this edition.

    With as_test, the personal links point at no one, so a test copy sent to a
    colleague cannot unsubscribe or re-rank the real reader."""
    composer = DigestComposer.for_edition(edition)
    readers, _ = readers_for_deliveries(edition=edition, rows=[(0, subscriber.pk, 0)], require_active=False)
    reader = readers[0]
    delivery = Delivery.objects.filter(subscriber=subscriber, edition=edition).first()
    if delivery is not None or _sent_since(subscriber, edition):
        # The live window starts at the reader's latest digest; for this edition
        # it started at the one before it.
        reader = replace(reader, window_start=_window_before(subscriber, edition))
    if as_test:
        reader = replace(reader, subscriber_id=0, token_version=0)
    titles = {paper_id: view.title for paper_id, view in composer.papers.items()}
    last = edition - timedelta(days=1)
    preview = Preview(
        subscriber=subscriber,
        digest=None,
        ranked=[],
        titles=titles,
        edition=edition,
        delivery=delivery,
        window=(reader.window_start, last),
        arxiv_ids={paper_id: view.arxiv_id for paper_id, view in composer.papers.items()},
    )
    if delivery is not None and delivery.status == Delivery.Status.SENT:
        return _as_sent(preview, composer, reader, delivery, as_test=as_test)

    preview.ranked = composer.ranked_for(reader)
    preview.also_trending = composer.also_trending_for(reader, preview.ranked)
    preview.digest = composer.message_parts(reader, delivery_id=delivery.pk if delivery else None)
    blockers = _blockers(subscriber, edition, delivery)
    if preview.digest is None:
        preview.outcome = Outcome.NOTHING
        preview.reasons = blockers or _why_empty(composer, reader)
    else:
        preview.reasons = blockers
        if blockers and delivery is None:
            preview.notes.append("Shown: what they would get if a digest were due.")
    return preview


def _sent_since(subscriber: Subscriber, edition: date) -> bool:
    return bool(subscriber.last_digest_at and subscriber.last_digest_at.date() >= edition)


def _window_before(subscriber: Subscriber, edition: date) -> date:
    """The window start the night used for this edition: after the reader's
    previous digest, not their latest one."""
    previous = (
        Delivery.objects.filter(subscriber=subscriber, edition__lt=edition, status=Delivery.Status.SENT)
        .order_by("-edition")
        .values_list("sent_at", "edition")
        .first()
    )
    last_on = None
    if previous is not None:
        sent_at, previous_edition = previous
        last_on = sent_at.date() if sent_at else previous_edition
    return window_start(edition=edition, frequency=subscriber.frequency, last_digest_on=last_on)


def _as_sent(
    preview: Preview, composer: DigestComposer, reader: Reader, delivery: Delivery, *, as_test: bool
) -> Preview:
    """Rebuild the digest the delivery recorded: the same papers in the same order."""
    preview.outcome = Outcome.SENT
    recorded = [int(paper_id) for paper_id in delivery.paper_ids or []]
    shown = [paper_id for paper_id in recorded if paper_id in composer.papers]
    gone = [paper_id for paper_id in recorded if paper_id not in composer.papers]
    if gone:
        for paper_id, title in Paper.objects.filter(id__in=gone).values_list("id", "title"):
            preview.titles[paper_id] = title
        preview.notes.append(
            f"{len(gone)} of the {len(recorded)} papers sent are hidden or deleted now, so the copy "
            "below leaves them out."
        )
    preview.ranked = _items_for(composer, reader, shown)
    preview.notes.append(
        "Rebuilt from the papers recorded on the delivery; each paper's reasons are worked out again "
        "from the reader's current preferences."
    )
    if not preview.ranked:
        return preview
    compiled = composer.render(preview.ranked, reader.preferences)
    values = composer.personal_values(reader, compiled)
    html, text = compiled.personalise(values)
    preview.digest = PersonalDigest(
        subject=delivery.subject or compiled.subject,
        html=html,
        text=text,
        paper_ids=compiled.paper_ids,
        headers=digest_headers(
            unsubscribe_url=values["UNSUB"],
            edition=preview.edition,
            delivery_id=None if as_test else delivery.pk,
        ),
    )
    return preview


def _items_for(composer: DigestComposer, reader: Reader, paper_ids: list[int]) -> list[RankedItem]:
    if not paper_ids:
        return []
    days = [day for p in paper_ids if (day := composer.papers[p].featured_on) is not None]
    ranker = composer.ranker(min([reader.window_start, *days]))
    items = []
    for paper_id in paper_ids:
        view = composer.papers[paper_id]
        found = ranker.match(view, reader.preferences)
        trend = ranker.trend.get(paper_id, 0.0)
        relevance = found.relevance if found else 0.0
        items.append(
            RankedItem(
                paper_id=paper_id,
                score=round(relevance + ranker.trend_weight * trend, 6),
                relevance=round(relevance, 6),
                trend=round(trend, 6),
                reasons=found.reasons if found else TRENDING_REASON,
                pinned=view.pinned,
            )
        )
    return items


def _blockers(subscriber: Subscriber, edition: date, delivery: Delivery | None) -> list[str]:
    """What keeps a digest from this reader for this edition, whatever its content."""
    if delivery is not None:
        status = Delivery.Status
        if delivery.status == status.FAILED:
            error = delivery.error or "no reason recorded"
            return [f"The delivery failed after {delivery.attempts} attempt(s): {error}."]
        if delivery.status == status.CANCELLED:
            return ["The delivery was cancelled: they were no longer subscribed when it was due to go out."]
        if delivery.status in (status.PLANNED, status.SENDING):
            return [f"The delivery is {delivery.get_status_display().lower()}: it has not gone out yet."]
        if delivery.status == status.EMPTY:
            return []  # the content explains it
    state = Subscriber.Status
    if subscriber.status == state.PENDING:
        return ["They have not confirmed their subscription yet."]
    if subscriber.status == state.PAUSED:
        return ["They paused their digest."]
    if subscriber.status == state.UNSUBSCRIBED:
        return ["They unsubscribed."]
    if subscriber.status == state.SUPPRESSED:
        reason = f" ({subscriber.suppression_reason})" if subscriber.suppression_reason else ""
        return [f"Their address is suppressed{reason}: it is never mailed again."]
    if delivery is None and not due_subscribers(edition=edition).filter(pk=subscriber.pk).exists():
        weekday = Subscriber.Weekday(subscriber.weekday).label
        return [f"They read weekly, on {weekday}s; {edition} is a {edition:%A}."]
    return []


def _why_empty(composer: DigestComposer, reader: Reader) -> list[str]:
    """Why the ranking came out empty, naming the first cause that applies."""
    prefs = reader.preferences
    start, last = reader.window_start, composer.edition - timedelta(days=1)
    window = f"{start}" if start == last else f"{start} to {last}"
    if not prefs.topics and not prefs.interests and not prefs.affinity.weights:
        return ["They have no topics or interests, so no paper can match."]
    if start > last:
        return [
            f"Their last digest went out on {start}, after the last day this edition covers ({last}); "
            "a digest only covers papers featured since the previous one."
        ]
    ranker = composer.ranker(start)
    if not ranker.candidates:
        hidden = Paper.objects.filter(hidden=True, featured_on__gte=start, featured_on__lte=last).count()
        extra = f" ({hidden} hidden by a curator)" if hidden else ""
        return [f"No papers were featured in their window, {window}{extra}."]
    passing = ranker.rank(replace(prefs, max_items=len(ranker.candidates)))
    if not passing:
        best = max(
            (match.relevance for c in ranker.candidates if (match := _best_match(ranker, c, prefs))),
            default=0.0,
        )
        return [
            f"All {len(ranker.candidates)} papers in their window ({window}) are below the relevance "
            f"gate of {ranker.gate:.2f} for their topics and interests (best: {best:.2f})."
        ]
    if all(item.paper_id in reader.already_sent for item in passing):
        return [
            f"All {len(passing)} papers that pass their gate in {window} were already sent to them "
            "in an earlier digest."
        ]
    return ["Nothing passed their relevance gate."]


def _best_match(ranker: Ranker, candidate: Candidate, prefs: Preferences) -> Match | None:
    """The paper's match with the gate lowered to 0, to say how close it came."""
    gate, ranker.gate = ranker.gate, 0.0
    try:
        return ranker.match(candidate, prefs)
    finally:
        ranker.gate = gate


def preview_sections(preview: Preview, *, edition: date) -> dict:
    """The ranking as data: the matched papers and the "Also trending" section, with scores and reasons."""

    def rows(items: list[RankedItem]) -> list[dict]:
        return [
            {
                "position": position,
                "arxiv_id": preview.arxiv_ids.get(item.paper_id, ""),
                "title": preview.titles.get(item.paper_id, ""),
                "score": item.score,
                "relevance": item.relevance,
                "trend": item.trend,
                "pinned": item.pinned,
                "reasons": list(item.reasons),
            }
            for position, item in enumerate(items, start=1)
        ]

    return {
        "subscriber": preview.subscriber.email,
        "edition": edition.isoformat(),
        "subject": preview.digest.subject if preview.digest else None,
        "sections": [
            {"name": "matches", "label": "Picked for you", "items": rows(preview.ranked)},
            {"name": "also_trending", "label": "Also trending", "items": rows(preview.also_trending)},
        ],
    }


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
