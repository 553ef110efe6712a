"""Compose digests: rank once per group of readers, render once per list, then
personalise each copy by substituting a handful of placeholders.

Rendering MJML and signing links are the expensive steps, so the work is split:

* `DigestComposer` loads the night's candidate papers once, ranks once per
  distinct preference set, and renders once per distinct final list. The
  rendered HTML and text hold placeholders (PBX…PBX) where the reader's own
  links go.
* `CompiledDigest.personalise()` fills those placeholders for one reader with
  string joins, which costs microseconds.

Readers' topic sets are diverse (tens of thousands of distinct lists a night),
so even one MJML compile per list is too slow. The digest template marks where
each paper's block starts and ends (PBXITEMPBX), and its compiled HTML is cut
at those marks: every paper's block is compiled once per abstract length, and
a list is assembled from blocks by joining strings. What differs between lists
inside a block (the "Why" line, the position in the text part) and around the
blocks (subject, preheader, count, interests summary) is filled in as the list
is assembled, escaped the way the template would have escaped it.

Scraped text is always escaped by the templates; URLs from scraped data are
kept only when they are plain http(s) links.
"""

import dataclasses
import re
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from anymail.message import AnymailMessage
from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils.html import escape
from django.utils.text import Truncator

from digest.feedback import make_feedback_token
from digest.models import Feedback, Paper, PaperLinks, PaperTopic, Topic
from digest.ranking import Affinity, Candidate, Preferences, RankedItem, Ranker, split_interests, trending
from digest.selectors import paper_topic_scores
from mail.build import build_message, message_domain, render_email, tidy_text
from subscribers.services import email_links, list_headers

MAX_HTML_BYTES = 102 * 1024
# Abstract lengths tried in turn until the email fits under MAX_HTML_BYTES.
ABSTRACT_STEPS = (700, 400, 200, 0)
SENT_LOOKBACK_DAYS = 14
# A reader back from a pause of at most this many days gets one catch-up digest
# of what they missed, from the pause's start but never older than this.
CATCHUP_MAX_DAYS = SENT_LOOKBACK_DAYS  # no window is longer than the look-back for papers already sent
# Papers every composer loads up front; a catch-up window loads the older ones on demand.
LOAD_DAYS = 7
PLACEHOLDER = re.compile(r"PBX([A-Z]+[0-9]*)PBX")
# The longest value any placeholder expands to, with room to spare; used to
# keep the personalised HTML under the size cap.
MAX_PLACEHOLDER_EXPANSION = 260
_SAFE_URL = re.compile(r"^https?://[^\s\"'<>\\]+$", re.IGNORECASE)
# Where the digest templates start each paper's block (and end the last one).
ITEM_MARK = "PBXITEMPBX"
# Filled per list while assembling, never left for personalising.
WHY_MARK = "PBXLWHYPBX"
NUMBER_MARK = "PBXLNUMBERPBX"
LIST_MARKS = ("PBXLSUBJECTPBX", "PBXLPREHEADERPBX", "PBXLCOUNTPBX", "PBXLSUMMARYPBX")
# Assembled lists kept per composer; assembling again after eviction is cheap.
# Both caches are bounded so a worker's memory does not grow with the night.
RENDER_CACHE_SIZE = 64
RANKING_CACHE_SIZE = 2048


def safe_url(url: str | None) -> str:
    """A scraped URL, only if it is a plain http(s) link (never javascript: or data:)."""
    url = (url or "").strip()
    return url if _SAFE_URL.match(url) else ""


def inert(text: str) -> str:
    """Scraped text can never smuggle in a placeholder of ours."""
    return PLACEHOLDER.sub(lambda m: m.group(0).replace("PBX", "PB\u200bX"), text or "")


@dataclass(frozen=True)
class PaperView(PaperLinks):
    id: int
    arxiv_id: str
    title: str
    authors: tuple[str, ...]
    abstract: str
    upvotes: int
    num_comments: int
    github_repo: str
    project_page: str
    thumbnail_url: str
    featured_on: date | None
    pinned: bool
    keywords: tuple[str, ...]
    topic_scores: dict[str, float]
    categories: tuple[str, ...] = ()
    # The day that puts it in a window: featured on Hugging Face, else published on arXiv.
    day: date | None = None

    def candidate(self) -> Candidate:
        return Candidate(
            paper_id=self.id,
            title=self.title,
            abstract=self.abstract,
            keywords=self.keywords,
            topic_scores=self.topic_scores,
            upvotes=self.upvotes,
            featured_on=self.featured_on,
            pinned=self.pinned,
            categories=self.categories,
            authors=self.authors,
        )


@dataclass(frozen=True)
class Reader:
    """What composing needs to know about one subscriber, from one bulk query."""

    subscriber_id: int
    email: str
    token_version: int
    preferences: Preferences
    window_start: date
    already_sent: frozenset[int] = frozenset()
    # "daily", "weekly" or "catchup": what this digest is, for its heading and subject.
    kind: str = "daily"


@dataclass
class CompiledDigest:
    subject: str
    paper_ids: tuple[int, ...]
    html_parts: list[str]
    text_parts: list[str]
    html_bytes: int
    kind: str = "daily"
    _template: tuple[str, str] | None = field(default=None, repr=False, compare=False)

    def personalise(self, values: dict[str, str]) -> tuple[str, str]:
        return _fill(self.html_parts, values), _fill(self.text_parts, values)

    def template(self) -> tuple[str, str]:
        """HTML and text with the PBX<KEY>PBX placeholders in place, for an ESP
        that fills them per recipient (see `personal_values` for the keys)."""
        if self._template is None:
            self._template = (_unfill(self.html_parts), _unfill(self.text_parts))
        return self._template


def _compile(rendered: str) -> list[str]:
    # Even positions are literal text, odd positions placeholder names.
    return PLACEHOLDER.split(rendered)


def _fill_marks(text: str, fills: dict[str, str]) -> str:
    for mark, value in fills.items():
        text = text.replace(mark, value)
    return text


def _unfill(parts: list[str]) -> str:
    out = parts[:]
    for index in range(1, len(out), 2):
        out[index] = f"PBX{out[index]}PBX"
    return "".join(out)


def _fill(parts: list[str], values: dict[str, str]) -> str:
    out = parts[:]
    for index in range(1, len(out), 2):
        out[index] = values[out[index]]
    return "".join(out)


DAILY, WEEKLY, CATCHUP = "daily", "weekly", "catchup"


@dataclass(frozen=True)
class Window:
    """The featured days a reader's digest covers, start to edition-1, and what kind of digest it is."""

    start: date
    kind: str


def window_start(*, edition: date, frequency: str, last_digest_on: date | None) -> date:
    """First featured day a reader's next digest covers.

    Edition D covers papers featured up to D-1 (the nightly run starts after
    the day closes). A daily reader gets the day since their last digest, a
    weekly one the last 7 days; a reader whose last digest was longer ago than
    that does not get a backlog.
    """
    lookback = 7 if frequency == "weekly" else 1
    start = edition - timedelta(days=lookback)
    if last_digest_on and last_digest_on > start:
        start = last_digest_on
    return start


def digest_window(
    *,
    edition: date,
    frequency: str,
    last_digest_at: datetime | None,
    paused_at: datetime | None = None,
    resumed_at: datetime | None = None,
) -> Window:
    """The window and kind of a reader's next digest.

    A reader back from a pause of at most CATCHUP_MAX_DAYS who has had no
    digest since resuming gets a catch-up: the window opens on the day the
    pause began (never more than CATCHUP_MAX_DAYS before the edition), when
    that is earlier than their usual window. A longer pause gets no backlog.
    """
    start = window_start(
        edition=edition,
        frequency=frequency,
        last_digest_on=last_digest_at.date() if last_digest_at else None,
    )
    kind = WEEKLY if frequency == "weekly" else DAILY
    back_from_pause = (
        paused_at is not None
        and resumed_at is not None
        and paused_at <= resumed_at
        and resumed_at - paused_at <= timedelta(days=CATCHUP_MAX_DAYS)
        and (last_digest_at is None or last_digest_at < resumed_at)
    )
    if back_from_pause:
        assert paused_at is not None
        catchup_start = max(paused_at.date(), edition - timedelta(days=CATCHUP_MAX_DAYS))
        if catchup_start < start:
            return Window(start=catchup_start, kind=CATCHUP)
    return Window(start=start, kind=kind)


def load_papers(*, since: date, until: date) -> dict[int, PaperView]:
    """Visible papers featured (or, for arXiv-only papers, published) in [since, until]."""
    rows = Paper.objects.filter(hidden=False).filter(
        Q(featured_on__gte=since, featured_on__lte=until)
        | Q(featured_on__isnull=True, published_at__date__gte=since, published_at__date__lte=until)
    )
    fields = (
        "id",
        "arxiv_id",
        "title",
        "authors",
        "abstract",
        "upvotes",
        "num_comments",
        "github_repo",
        "project_page",
        "thumbnail_url",
        "featured_on",
        "pinned",
        "ai_keywords",
        "categories",
        "published_at",
    )
    papers = list(rows.values_list(*fields))
    scores = paper_topic_scores(paper_ids=[row[0] for row in papers])
    views = {}
    for row in papers:
        data = dict(zip(fields, row, strict=True))
        views[data["id"]] = PaperView(
            id=data["id"],
            arxiv_id=data["arxiv_id"],
            title=inert(data["title"]),
            authors=tuple(inert(str(name)) for name in (data["authors"] or [])),
            abstract=inert(data["abstract"]),
            upvotes=data["upvotes"],
            num_comments=data["num_comments"],
            github_repo=safe_url(data["github_repo"]),
            project_page=safe_url(data["project_page"]),
            thumbnail_url=safe_url(data["thumbnail_url"]),
            featured_on=data["featured_on"],
            pinned=data["pinned"],
            keywords=tuple(str(k) for k in (data["ai_keywords"] or [])),
            topic_scores=scores.get(data["id"], {}),
            categories=tuple(str(c) for c in (data["categories"] or [])),
            day=data["featured_on"] or (data["published_at"].date() if data["published_at"] else None),
        )
    return views


def load_affinities(subscriber_ids: list[int]) -> dict[int, Affinity]:
    """Each reader's learned topic weights from their 👍/👎 votes (two queries)."""
    votes = list(
        Feedback.objects.filter(subscriber_id__in=subscriber_ids).values_list(
            "subscriber_id", "paper_id", "vote"
        )
    )
    if not votes:
        return {}
    topic_scores: dict[int, dict[str, float]] = defaultdict(dict)
    for paper_id, slug, score in PaperTopic.objects.filter(
        paper_id__in={paper_id for _, paper_id, _ in votes}, score__gt=0
    ).values_list("paper_id", "topic__slug", "score"):
        topic_scores[paper_id][slug] = score
    per_reader: dict[int, list] = defaultdict(list)
    for subscriber_id, paper_id, vote in votes:
        per_reader[subscriber_id].append((vote, topic_scores.get(paper_id, {})))
    return {sid: Affinity.from_votes(reader_votes) for sid, reader_votes in per_reader.items()}


def topic_names() -> dict[str, str]:
    return dict(Topic.objects.values_list("slug", "name"))


def interests_summary(preferences: Preferences, names: dict[str, str]) -> str:
    parts = [names.get(slug, slug) for slug in sorted(preferences.topics)]
    parts += [f"“{text}”" for text in preferences.interests]
    if not parts:
        return "the day's trending papers"
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def build_preferences(
    *,
    topics,
    interests: str,
    digest_size: int,
    affinity: Affinity | None,
    categories: Iterable[str] = (),
    authors: Iterable[str] = (),
) -> Preferences:
    size = max(1, min(int(digest_size or settings.DIGEST_MAX_ITEMS), settings.DIGEST_MAX_ITEMS_LIMIT))
    return Preferences(
        topics=frozenset(topics),
        interests=split_interests(interests),
        max_items=size,
        affinity=affinity or Affinity(),
        categories=frozenset(categories),
        authors=tuple(authors),
    )


@dataclass
class DigestComposer:
    """Ranks and renders for one edition. Reuse it across a chunk of readers."""

    edition: date
    papers: dict[int, PaperView]
    names: dict[str, str]
    # First day `papers` holds; windows that open earlier load the rest on demand.
    loaded_since: date | None = None
    _rankers: dict[date, Ranker] = field(default_factory=dict)
    render_cache_size: int | None = RENDER_CACHE_SIZE
    _rankings: OrderedDict[tuple, list[RankedItem]] = field(default_factory=OrderedDict)
    _rendered: OrderedDict[tuple, CompiledDigest] = field(default_factory=OrderedDict)
    # (paper id, abstract length) -> the paper's compiled HTML and raw text block
    _blocks: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)
    # (whether any paper has an image, kind, window start) -> HTML and text around the blocks
    _frames: dict[tuple[bool, str, date | None], tuple[str, str, str, str]] = field(default_factory=dict)
    lists_assembled: int = 0

    @classmethod
    def for_edition(cls, edition: date) -> "DigestComposer":
        since = edition - timedelta(days=LOAD_DAYS)
        return cls(
            edition=edition,
            papers=load_papers(since=since, until=edition - timedelta(days=1)),
            names=topic_names(),
            loaded_since=since,
        )

    def _load_from(self, start: date) -> None:
        """Catch-up windows reach further back than the papers loaded up front."""
        if self.loaded_since is None or start >= self.loaded_since:
            return
        older = load_papers(since=start, until=self.loaded_since - timedelta(days=1))
        self.papers = {**older, **self.papers}
        self.loaded_since = start

    def ranker(self, start: date) -> Ranker:
        """The ranker for papers of [start, edition-1]. Over more than one day, the trend is
        the upvote percentile across the whole window, so a weekly or catch-up digest
        carries the period's best and not each day's top paper."""
        ranker = self._rankers.get(start)
        if ranker is None:
            self._load_from(start)
            last = self.edition - timedelta(days=1)
            candidates = [
                view.candidate()
                for view in self.papers.values()
                if view.day is None or start <= view.day <= last
            ]
            ranker = self._rankers[start] = Ranker(
                candidates,
                topic_names=self.names,
                gate=settings.DIGEST_RELEVANCE_GATE,
                trend_weight=settings.DIGEST_TREND_WEIGHT,
                trend_by_day=start >= last,
            )
        return ranker

    def ranked_for(self, reader: Reader) -> list[RankedItem]:
        prefs = reader.preferences
        # Ranking picks greedily, so a shorter list is a prefix of a longer one:
        # rank once at the largest size and cut per reader, so readers who differ
        # only in digest size share one ranking.
        key = (prefs.key()[:2], prefs.affinity.weights, prefs.follows_key(), reader.window_start)
        ranked = self._rankings.get(key)
        if ranked is None:
            longest = dataclasses.replace(prefs, max_items=settings.DIGEST_MAX_ITEMS_LIMIT)
            ranked = self._rankings[key] = self.ranker(reader.window_start).rank(longest, extra=4)
            if len(self._rankings) > RANKING_CACHE_SIZE:
                self._rankings.popitem(last=False)
        else:
            self._rankings.move_to_end(key)
        # Papers by followed authors always stay, even past the reader's size.
        size = max(prefs.max_items, sum(item.followed for item in ranked))
        # A few spare items, so readers who already got some papers still get a full list.
        ranked = ranked[: size + 4]
        if reader.already_sent:
            ranked = [item for item in ranked if item.paper_id not in reader.already_sent]
        if not ranked and not settings.DIGEST_SKIP_EMPTY:
            ranked = trending(self.ranker(reader.window_start), prefs.max_items, exclude=reader.already_sent)
        return ranked[: max(prefs.max_items, sum(item.followed for item in ranked))]

    def compiled_for(self, reader: Reader) -> CompiledDigest | None:
        """The rendered digest with placeholders, or None when nothing passed the gate."""
        ranked = self.ranked_for(reader)
        if not ranked:
            return None
        key = (
            tuple((item.paper_id, item.reasons) for item in ranked),
            interests_summary(reader.preferences, self.names),
            reader.kind,
            reader.window_start if reader.kind != DAILY else None,
        )
        compiled = self._rendered.get(key)
        if compiled is None:
            compiled = self._rendered[key] = self.render(
                ranked, reader.preferences, kind=reader.kind, window_start=reader.window_start
            )
            self.lists_assembled += 1
            if self.render_cache_size is not None and len(self._rendered) > self.render_cache_size:
                self._rendered.popitem(last=False)
        else:
            self._rendered.move_to_end(key)
        return compiled

    def render(
        self,
        ranked: list[RankedItem],
        preferences: Preferences,
        *,
        kind: str = DAILY,
        window_start: date | None = None,
    ) -> CompiledDigest:
        summary = interests_summary(preferences, self.names)
        issue = Issue(kind=kind, start=window_start if kind != DAILY else None)
        items = list(ranked)
        for abstract_chars in ABSTRACT_STEPS:
            compiled = self._render_once(items, summary, abstract_chars, issue)
            if fits(compiled):
                return compiled
        # Even without abstracts it is too long: drop papers from the end.
        while len(items) > 1 and not fits(compiled):
            items = items[:-1]
            compiled = self._render_once(items, summary, 0, issue)
        return compiled

    def issue_label(self, issue: "Issue") -> str:
        """The heading's date line: the day, the week, or the days a catch-up covers."""
        last = self.edition - timedelta(days=1)
        if issue.kind == WEEKLY and issue.start:
            return f"Week of {issue.start.strftime('%-d %B %Y')}"
        if issue.kind == CATCHUP and issue.start:
            return f"Catch-up: {date_range(issue.start, last)}"
        return self.edition.strftime("%A %-d %B %Y")

    def _item_context(self, paper: PaperView, abstract_chars: int) -> dict:
        site = settings.SITE_URL
        token = f"PBXFB{paper.id}PBX"
        return {
            "title": paper.title,
            "authors_line": authors_line(paper.authors),
            "abstract": Truncator(paper.abstract).chars(abstract_chars) if abstract_chars else "",
            "reasons": [WHY_MARK],
            "number": NUMBER_MARK,
            "pinned": paper.pinned,
            "upvotes": paper.upvotes,
            "num_comments": paper.num_comments,
            "hf_url": paper.hf_url,
            "abs_url": paper.abs_url,
            "pdf_url": paper.pdf_url,
            "code_url": paper.github_repo,
            "project_url": paper.project_page,
            "image_url": self._image(paper),
            "feedback_up_url": f"{site}{reverse('digest:feedback', args=[token, 'up'])}",
            "feedback_down_url": f"{site}{reverse('digest:feedback', args=[token, 'down'])}",
        }

    @staticmethod
    def _image(paper: PaperView) -> str:
        return paper.thumbnail_url if settings.DIGEST_IMAGES else ""

    def _compile_blocks(self, papers: list[PaperView], abstract_chars: int, issue: "Issue") -> None:
        """Compile these papers' blocks in one MJML pass; keep the frame around them too."""
        subject, preheader, count, summary = LIST_MARKS
        context = {
            "subject": subject,
            "preheader": preheader,
            "count_label": count,
            "edition_label": self.issue_label(issue),
            # daily | weekly | catchup, and the featured days covered, for the template's labels.
            "kind": issue.kind,
            "window_start": issue.start or self.edition - timedelta(days=1),
            "window_end": self.edition - timedelta(days=1),
            "items": [self._item_context(paper, abstract_chars) for paper in papers],
            "interests_summary": summary,
            "manage_url": "PBXMANAGEPBX",
            "unsubscribe_url": "PBXUNSUBPBX",
            "postal_address": settings.SENDER_POSTAL_ADDRESS,
        }
        rendered = render_email("digest", context, tidy=False)
        html = rendered.html.split(ITEM_MARK)
        text = rendered.text.split(ITEM_MARK)
        if len(html) != len(papers) + 2 or len(text) != len(papers) + 2:
            raise ValueError("the digest templates must mark each paper's block with PBXITEMPBX")
        for paper, html_block, text_block in zip(papers, html[1:-1], text[1:-1], strict=True):
            self._blocks[(paper.id, abstract_chars)] = (html_block, text_block)
        # An image adds a style to the head, so frames differ by whether any paper has one.
        has_image = any(self._image(paper) for paper in papers)
        self._frames.setdefault((has_image, issue.kind, issue.start), (html[0], html[-1], text[0], text[-1]))

    def _render_once(
        self, ranked: list[RankedItem], summary: str, abstract_chars: int, issue: "Issue"
    ) -> CompiledDigest:
        papers = [self.papers[item.paper_id] for item in ranked]
        has_image = any(self._image(paper) for paper in papers)
        frame = (has_image, issue.kind, issue.start)
        if frame not in self._frames:
            self._compile_blocks(papers, abstract_chars, issue)
        else:
            missing = [paper for paper in papers if (paper.id, abstract_chars) not in self._blocks]
            if missing:
                self._compile_blocks(missing, abstract_chars, issue)
        html_head, html_tail, text_head, text_tail = self._frames[frame]

        html_parts = [html_head]
        text_parts = [text_head]
        for number, (item, paper) in enumerate(zip(ranked, papers, strict=True), start=1):
            html_block, text_block = self._blocks[(paper.id, abstract_chars)]
            why = inert(" · ".join(item.reasons))
            html_parts.append(html_block.replace(WHY_MARK, escape(why)))
            text_parts.append(text_block.replace(WHY_MARK, why).replace(NUMBER_MARK, str(number)))
        html_parts.append(html_tail)
        text_parts.append(text_tail)

        titles = [paper.title for paper in papers]
        subject = digest_subject(self.edition, titles, kind=issue.kind)
        count = f"{len(papers)} paper{'s' if len(papers) != 1 else ''}"
        head = preheader(
            [{"reasons": ranked[0].reasons, "title": titles[0]}, *({"title": t} for t in titles[1:])]
        )
        fills = {
            "PBXLSUBJECTPBX": subject,
            "PBXLPREHEADERPBX": head,
            "PBXLCOUNTPBX": count,
            "PBXLSUMMARYPBX": inert(summary),
        }
        html = _fill_marks("".join(html_parts), {mark: escape(value) for mark, value in fills.items()})
        text = tidy_text(_fill_marks("".join(text_parts), fills))
        return CompiledDigest(
            subject=subject,
            paper_ids=tuple(item.paper_id for item in ranked),
            html_parts=_compile(html),
            text_parts=_compile(text),
            html_bytes=len(html.encode()),
            kind=issue.kind,
        )

    def personal_values(self, reader: Reader, compiled: CompiledDigest) -> dict[str, str]:
        links = email_links(subscriber_id=reader.subscriber_id, token_version=reader.token_version)
        values = {"UNSUB": links["unsubscribe_url"], "MANAGE": links["manage_url"]}
        for paper_id in compiled.paper_ids:
            values[f"FB{paper_id}"] = make_feedback_token(
                reader.subscriber_id, paper_id, reader.token_version
            )
        return values

    def message_parts(self, reader: Reader, delivery_id: int | None = None) -> "PersonalDigest | None":
        """One reader's finished digest; with a delivery id its headers carry that delivery's Message-ID."""
        compiled = self.compiled_for(reader)
        if compiled is None:
            return None
        values = self.personal_values(reader, compiled)
        html, text = compiled.personalise(values)
        return PersonalDigest(
            subject=compiled.subject,
            html=html,
            text=text,
            paper_ids=compiled.paper_ids,
            kind=compiled.kind,
            headers=digest_headers(
                unsubscribe_url=values["UNSUB"], edition=self.edition, delivery_id=delivery_id
            ),
        )


@dataclass(frozen=True)
class PersonalDigest:
    subject: str
    html: str
    text: str
    paper_ids: tuple[int, ...]
    headers: dict[str, str]
    kind: str = DAILY


@dataclass(frozen=True)
class Issue:
    """What a rendered digest is: its kind, and for weekly and catch-up digests the window's first day."""

    kind: str = DAILY
    start: date | None = None


def date_range(first: date, last: date) -> str:
    """ "10 – 23 November 2026", "28 October – 3 November 2026", "29 December 2026 – 4 January 2027"."""
    if first.year != last.year:
        return f"{first.strftime('%-d %B %Y')} – {last.strftime('%-d %B %Y')}"
    if first.month != last.month:
        return f"{first.strftime('%-d %B')} – {last.strftime('%-d %B %Y')}"
    return f"{first.day} – {last.strftime('%-d %B %Y')}"


def fits(compiled: CompiledDigest) -> bool:
    placeholders = (len(compiled.html_parts) - 1) // 2
    return compiled.html_bytes + placeholders * MAX_PLACEHOLDER_EXPANSION <= MAX_HTML_BYTES


def authors_line(authors: tuple[str, ...]) -> str:
    if not authors:
        return "Unknown authors"
    if len(authors) <= 3:
        return ", ".join(authors)
    return f"{', '.join(authors[:3])} et al."


def digest_subject(edition: date, titles: list[str], *, kind: str = DAILY) -> str:
    count = len(titles)
    papers = f"{count} paper{'s' if count != 1 else ''}"
    if kind == WEEKLY:
        head = f"{papers}, the week's best to {edition.strftime('%a %-d %b')}: "
    elif kind == CATCHUP:
        head = f"Catch-up, {papers} you missed: "
    else:
        head = f"{papers} for {edition.strftime('%a %-d %b')}: "
    top = " ".join(titles[0].split()) if titles else ""
    return head + Truncator(top).chars(max(20, 110 - len(head)))


def preheader(items: list[dict]) -> str:
    reasons = items[0]["reasons"][0] if items and items[0]["reasons"] else ""
    others = [item["title"] for item in items[1:3]]
    text = reasons
    if others:
        text += (" · Also: " if text else "Also: ") + " · ".join(others)
    return Truncator(text).chars(140)


# --- The digest message ---------------------------------------------------------------
#
# Every digest, sent alone, in a batch, as a test copy or by the benchmark's plain
# loop, is assembled here, so its headers, tags and metadata never drift apart.


def delivery_message_id(edition: date, delivery_id: int, domain: str | None = None) -> str:
    """Stable per delivery, so a receiving server can drop a duplicate copy."""
    return f"<digest.{edition:%Y%m%d}.{delivery_id}@{domain or message_domain()}>"


def digest_headers(
    *,
    unsubscribe_url: str,
    edition: date | None = None,
    delivery_id: int | None = None,
    domain: str | None = None,
) -> dict[str, str]:
    """List-Unsubscribe (RFC 8058), List-Id and, for a real delivery, its stable Message-ID."""
    headers = list_headers(unsubscribe_url=unsubscribe_url)
    if edition is not None and delivery_id is not None:
        headers["Message-ID"] = delivery_message_id(edition, delivery_id, domain)
    return headers


def digest_message(
    *,
    to: str,
    subject: str,
    html: str,
    text: str,
    edition: date,
    headers: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
) -> AnymailMessage:
    """The anymail message for a digest. A batch passes no headers here and sets
    each recipient's `digest_headers` as merge headers instead."""
    return build_message(
        to=to,
        subject=subject,
        text=text,
        html=html,
        headers=headers,
        tags=["digest"],
        metadata={"edition": edition.isoformat(), **(metadata or {})},
    )
