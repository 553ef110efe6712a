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

The list of titles at the top is cut the same way (PBXTOCPBX), so each
paper's entry is compiled with its block. Database reads live in
`digest.selectors`; this module only ranks and renders.

Scraped text is always escaped by the templates; URLs from scraped data are
kept only when they are plain http(s) links (`digest.papers`).
"""

import dataclasses
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from html import escape as html_escape

from anymail.message import AnymailMessage
from django.conf import settings
from django.urls import reverse
from django.utils.text import Truncator, add_truncation_text, calculate_truncate_chars_length

from digest.feedback import make_feedback_tokens
from digest.models import Topic
from digest.papers import PLACEHOLDER, PaperView, inert
from digest.ranking import Affinity, Preferences, RankedItem, Ranker, split_interests, trending
from digest.selectors import corpus_stats_for, load_papers, topic_names
from digest.signed_links import view_url
from digest.tagging.analysis import current_analyzer
from digest.tagging.tagger import get_tagger
from mail.build import build_message, message_domain, render_email, tidy_text
from subscribers.links import email_links, list_headers

MAX_HTML_BYTES = 102 * 1024
# Abstract lengths tried in turn until the email fits under MAX_HTML_BYTES, for
# readers who asked for abstracts; everyone else gets the TL;DR line only.
ABSTRACT_STEPS = (3000, 700, 400, 200, 0)
NO_ABSTRACT_STEPS = (0,)
SENT_LOOKBACK_DAYS = 14
# A reader back from a pause of at most this many days gets one catch-up digest
# of what they missed, from the pause's start but never older than this.
CATCHUP_MAX_DAYS = SENT_LOOKBACK_DAYS  # no window is longer than the look-back for papers already sent
# Papers every composer loads up front; a catch-up window loads the older ones on demand.
LOAD_DAYS = 7
# The longest value any placeholder expands to, with room to spare; used to
# keep the personalised HTML under the size cap.
MAX_PLACEHOLDER_EXPANSION = 260
# Where the digest templates start each paper's block (and end the last one).
ITEM_MARK = "PBXITEMPBX"
# Where the list of titles at the top starts each paper's entry (and ends the last).
TOC_MARK = "PBXTOCPBX"
# Filled per list while assembling, never left for personalising.
WHY_MARK = "PBXLWHYPBX"
# Where a paper's block may open a section ("Also trending"), filled per list.
SECTION_MARK = "PBXLSECTIONPBX"
TRENDING_HEADING = "Also trending (not matched to your interests)"
# Reasons per paper in the email, so its "Why" line stays short on a phone.
EMAIL_REASONS = 2
NUMBER_MARK = "PBXLNUMBERPBX"
LIST_MARKS = ("PBXLSUBJECTPBX", "PBXLPREHEADERPBX", "PBXLCOUNTPBX", "PBXLSUMMARYPBX")
# Assembled lists kept per composer; assembling again after eviction is cheap.
# Both caches are bounded so a worker's memory does not grow with the night.
RENDER_CACHE_SIZE = 32
RANKING_CACHE_SIZE = 2048
# compiled_for's answer for readers whose preferences match nothing today.
_NOTHING: tuple = ("nothing passed the gate",)


@dataclass(frozen=True)
class Reader:
    """What composing needs to know about one subscriber, from one bulk query."""

    subscriber_id: int
    email: str
    token_version: int
    preferences: Preferences
    window_start: date
    already_sent: frozenset[int] = frozenset()
    # The delivery this digest is for: its "view in browser" link is signed for it.
    delivery_id: int = 0
    frequency: str = "daily"
    # "daily", "weekly" or "catchup" (see digest_window); empty means the reader's frequency.
    kind: str = ""
    with_abstracts: bool = False

    @property
    def digest_kind(self) -> str:
        return self.kind or (WEEKLY if self.frequency == "weekly" else DAILY)


# Invisible, and breaks any ESP's markup it is put into.
ZERO_WIDTH_SPACE = "\u200b"


@dataclass(frozen=True)
class PlaceholderSyntax:
    """How an ESP marks a per-recipient value in content it fills in at sending.

    `reserved` are the character sequences the ESP reads as its own markup
    anywhere in the content (its template language); wherever our literal text
    holds one (a paper titled "Templates with {{var}}", a LaTeX `{{x}}` in an
    abstract), a zero-width space is put inside it, so the ESP shows it as text
    instead of evaluating it, and no scraped text can ever fill in or reveal
    another reader's values."""

    name: str
    opening: str
    closing: str
    reserved: tuple[str, ...] = ()

    def placeholder(self, key: str) -> str:
        return f"{self.opening}{key}{self.closing}"

    def neutralise(self, text: str) -> str:
        for sequence in self.reserved:
            # Repeat for sequences that overlap themselves ("{{{" holds "{{" twice).
            while sequence in text:
                text = text.replace(sequence, sequence[0] + ZERO_WIDTH_SPACE + sequence[1:])
        return text


# Our own placeholders, also SendGrid's substitutions (merge_field_format "PBX{}PBX").
PBX_SYNTAX = PlaceholderSyntax("pbx", "PBX", "PBX", reserved=("PBX",))


@dataclass
class CompiledDigest:
    subject: str
    paper_ids: tuple[int, ...]
    html_parts: list[str]
    text_parts: list[str]
    html_bytes: int
    # The papers of the "Also trending" section (also in paper_ids, after the matches).
    also_trending: tuple[int, ...] = ()
    kind: str = "daily"
    # The list (daily or weekly) its List-Id names.
    frequency: str = "daily"
    _templates: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False, compare=False)
    _neutral: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict, repr=False, compare=False)
    # What the composer knows this list by (see DigestComposer.compiled_for).
    key: tuple = field(default=(), repr=False, compare=False)
    # The placeholder of each paper's 👍/👎 token, in the order of paper_ids.
    vote_keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.vote_keys = tuple(f"FB{paper_id}" for paper_id in self.paper_ids)

    def personalise(self, values: dict[str, str], syntax: PlaceholderSyntax | None = None) -> tuple[str, str]:
        """HTML and text filled in for one reader; with an ESP's syntax, its markup
        is neutralised in the literal text too (for an ESP that reads its template
        language in every message)."""
        if syntax is None:
            return _fill(self.html_parts, values), _fill(self.text_parts, values)
        html_parts, text_parts = self._neutral_parts(syntax)
        return _fill(html_parts, values), _fill(text_parts, values)

    def template(self, syntax: PlaceholderSyntax = PBX_SYNTAX) -> tuple[str, str]:
        """HTML and text with a placeholder in the ESP's syntax wherever a
        reader's own value goes (see `personal_values` for the keys), and the
        ESP's markup neutralised everywhere else; for an ESP that fills them in
        per recipient."""
        template = self._templates.get(syntax.name)
        if template is None:
            html_parts, text_parts = self._neutral_parts(syntax)
            template = self._templates[syntax.name] = (
                _emit(html_parts, syntax),
                _emit(text_parts, syntax),
            )
        return template

    def _neutral_parts(self, syntax: PlaceholderSyntax) -> tuple[list[str], list[str]]:
        parts = self._neutral.get(syntax.name)
        if parts is None:
            parts = self._neutral[syntax.name] = (
                _neutralise_literals(self.html_parts, syntax),
                _neutralise_literals(self.text_parts, syntax),
            )
        return parts


def _compile(rendered: str) -> list[str]:
    # Even positions are literal text, odd positions placeholder names.
    return PLACEHOLDER.split(rendered)


def _fill_marks(text: str, fills: Mapping[str, str]) -> str:
    for mark, value in fills.items():
        text = text.replace(mark, value)
    return text


_NO_FILLS: Mapping[str, str] = {}


def _assemble(pieces: Iterable[tuple[list[str], Mapping[str, str]]]) -> list[str]:
    """The parts (see _compile) of the pieces put end to end, each piece's marks
    replaced by its fills. A fill joins the literal text around it, so what is
    left at odd positions are the reader's own placeholders; a fill is never
    searched for placeholders (list values are escaped and inert)."""
    parts: list[str] = []
    literal: list[str] = []
    for cut, fills in pieces:
        literal.append(cut[0])
        for index in range(1, len(cut), 2):
            fill = fills.get(cut[index])
            if fill is None:
                parts.append("".join(literal))
                parts.append(cut[index])
                literal = []
            else:
                literal.append(fill)
            literal.append(cut[index + 1])
    parts.append("".join(literal))
    return parts


def _parts_bytes(parts: list[str]) -> int:
    """UTF-8 size of the text the parts stand for, placeholders written out (PBX<name>PBX)."""
    size = sum(map(len, map(str.encode, parts[::2])))
    return size + sum(map(len, parts[1::2])) + 6 * (len(parts) // 2)


def _neutralise_literals(parts: list[str], syntax: PlaceholderSyntax) -> list[str]:
    out = parts[:]
    for index in range(0, len(out), 2):
        out[index] = syntax.neutralise(out[index])
    return out


def _emit(parts: list[str], syntax: PlaceholderSyntax) -> str:
    out = parts[:]
    for index in range(1, len(out), 2):
        out[index] = syntax.placeholder(out[index])
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
    show_trending: bool = True,
) -> Preferences:
    size = max(1, min(int(digest_size or settings.DIGEST_MAX_ITEMS), settings.DIGEST_MAX_ITEMS_LIMIT))
    return Preferences(
        topics=frozenset(topics),
        interests=split_interests(interests),
        max_items=size,
        affinity=affinity or Affinity(),
        also_trending=show_trending,
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
    # (preferences, window, kind, frequency, abstracts) -> the key of their list in _rendered
    _lists: OrderedDict[tuple, tuple] = field(default_factory=OrderedDict)
    # Each paper's analysed terms, shared by the windows' interest indexes (for one analyser).
    _analysed: tuple[object, dict] = field(default_factory=lambda: (None, {}))
    # (paper id, abstract length) -> the paper's compiled HTML and raw text block,
    # and its entry in the list of titles at the top (HTML and text); HTML is kept
    # cut at its placeholders (see _assemble)
    _blocks: dict[tuple[int, int], tuple[list[str], str, list[str], str]] = field(default_factory=dict)
    # (whether any paper has an image, kind) -> HTML and text around the titles and blocks
    _frames: dict[tuple[bool, str, date | None], tuple[list[str], list[str], list[str], str, str, str]] = (
        field(default_factory=dict)
    )
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
                view for view in self.papers.values() if view.day is None or start <= view.day <= last
            ]
            analyzer = current_analyzer()
            if self._analysed[0] is not analyzer:
                self._analysed = (analyzer, {})
            ranker = self._rankers[start] = Ranker(
                candidates,
                topic_names=self.names,
                gate=settings.DIGEST_RELEVANCE_GATE,
                trend_weight=settings.DIGEST_TREND_WEIGHT,
                stats=lambda terms: corpus_stats_for(terms=terms),
                analyzer=analyzer,
                tagger=get_tagger(Topic.objects.filter(is_active=True).order_by("slug"), analyzer),
                trend_by_day=start >= last,
                analysed=self._analysed[1],
            )
        return ranker

    def ranked_for(self, reader: Reader) -> list[RankedItem]:
        prefs = reader.preferences
        # Ranking picks greedily, so a shorter list is a prefix of a longer one:
        # rank once at the largest size and cut per reader, so readers who differ
        # only in digest size share one ranking.
        key = (prefs.key()[:2], prefs.affinity.key(), prefs.follows_key(), reader.window_start)
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

    def also_trending_for(self, reader: Reader, ranked: list[RankedItem]) -> list[RankedItem]:
        """The "Also trending" section: the window's most upvoted papers missing from the list."""
        if not reader.preferences.also_trending or not ranked or any(item.trending for item in ranked):
            return []
        return self.ranker(reader.window_start).also_trending(
            [item.paper_id for item in ranked], exclude=reader.already_sent
        )

    def compiled_for(self, reader: Reader) -> CompiledDigest | None:
        """The rendered digest with placeholders, or None when nothing passed the gate.

        Readers alike in everything the digest depends on (and who have not
        received any of this window's papers already) go straight to the list
        the first of them got, while it is still cached."""
        alike = None
        if reader.already_sent and not reader.already_sent & self.ranker(reader.window_start).paper_ids:
            # Papers received before, none of them in this window: as if none.
            reader = dataclasses.replace(reader, already_sent=frozenset())
        if not reader.already_sent:
            alike = (
                reader.preferences,
                reader.window_start,
                reader.kind,
                reader.frequency,
                reader.with_abstracts,
            )
            known = self._lists.get(alike)
            if known is not None:
                self._lists.move_to_end(alike)
                if known is _NOTHING:
                    return None
                found = self._rendered.get(known)
                if found is not None:
                    self._rendered.move_to_end(known)
                    return found
        compiled = self._compiled_for(reader)
        if alike is not None:
            self._lists[alike] = compiled.key if compiled is not None else _NOTHING
            if len(self._lists) > 4 * RENDER_CACHE_SIZE:
                self._lists.popitem(last=False)
        return compiled

    def _compiled_for(self, reader: Reader) -> CompiledDigest | None:
        ranked = self.ranked_for(reader)
        if not ranked:
            return None
        trending = self.also_trending_for(reader, ranked)
        key = (
            tuple((item.paper_id, item.reasons) for item in ranked),
            tuple(item.paper_id for item in trending),
            interests_summary(reader.preferences, self.names),
            reader.digest_kind,
            # A catch-up names the days it covers.
            reader.window_start if reader.digest_kind == CATCHUP else None,
            reader.frequency,
            reader.with_abstracts,
        )
        compiled = self._rendered.get(key)
        if compiled is None:
            compiled = self._rendered[key] = self.render(
                ranked,
                reader.preferences,
                trending,
                kind=reader.digest_kind,
                with_abstracts=reader.with_abstracts,
                window_start=reader.window_start,
            )
            compiled.frequency = reader.frequency
            compiled.key = key
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
        trending: list[RankedItem] | None = None,
        *,
        kind: str = DAILY,
        with_abstracts: bool = False,
        window_start: date | None = None,
    ) -> CompiledDigest:
        summary = interests_summary(preferences, self.names)
        issue = Issue(kind=kind, start=window_start if kind == CATCHUP else None)
        items = list(ranked)
        extra = list(trending or ())
        for abstract_chars in ABSTRACT_STEPS if with_abstracts else NO_ABSTRACT_STEPS:
            compiled = self._render_once(items, summary, abstract_chars, issue, extra)
            if fits(compiled):
                return compiled
        # Even without abstracts it is too long: drop the trending section, then papers from the end.
        compiled = self._render_once(items, summary, 0, issue)
        while len(items) > 1 and not fits(compiled):
            items = items[:-1]
            compiled = self._render_once(items, summary, 0, issue)
        return compiled

    def _item_context(self, paper: PaperView, abstract_chars: int) -> dict:
        site = settings.SITE_URL
        token = f"PBXFB{paper.id}PBX"
        return {
            "id": paper.id,
            "title": paper.title,
            "authors_line": paper.authors_line,
            "tldr": paper.tldr,
            "abstract": Truncator(paper.abstract).chars(abstract_chars) if abstract_chars else "",
            "reasons": [WHY_MARK],
            "section": SECTION_MARK,
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
            "edition_label": edition_label(self.edition, issue.kind, start=issue.start),
            "kind": issue.kind,
            "items": [self._item_context(paper, abstract_chars) for paper in papers],
            "interests_summary": summary,
            "view_url": "PBXVIEWPBX",
            "manage_url": "PBXMANAGEPBX",
            "unsubscribe_url": "PBXUNSUBPBX",
            "postal_address": settings.SENDER_POSTAL_ADDRESS,
        }
        rendered = render_email("digest", context, tidy=False)
        html, html_toc = _split_marked(rendered.html, len(papers))
        text, text_toc = _split_marked(rendered.text, len(papers))
        for index, paper in enumerate(papers):
            self._blocks[(paper.id, abstract_chars)] = (
                _compile(html[index + 1]),
                text[index + 1],
                _compile(html_toc[index + 1]),
                text_toc[index + 1],
            )
        # An image adds a style to the head, so frames differ by whether any paper has one.
        has_image = any(self._image(paper) for paper in papers)
        self._frames.setdefault(
            (has_image, issue.kind, issue.start),
            (
                _compile(html_toc[0]),
                _compile(html_toc[-1]),
                _compile(html[-1]),
                text_toc[0],
                text_toc[-1],
                text[-1],
            ),
        )

    def _render_once(
        self,
        matched: list[RankedItem],
        summary: str,
        abstract_chars: int,
        issue: "Issue | None" = None,
        trending: list[RankedItem] | None = None,
    ) -> CompiledDigest:
        issue = issue or Issue()
        kind = issue.kind
        ranked = [*matched, *(trending or ())]
        papers = [self.papers[item.paper_id] for item in ranked]
        has_image = any(self._image(paper) for paper in papers)
        frame = (has_image, issue.kind, issue.start)
        if frame not in self._frames:
            self._compile_blocks(papers, abstract_chars, issue)
        else:
            missing = [paper for paper in papers if (paper.id, abstract_chars) not in self._blocks]
            if missing:
                self._compile_blocks(missing, abstract_chars, issue)
        html_head, html_after_toc, html_tail, text_head, text_after_toc, text_tail = self._frames[frame]

        # HTML goes together from pieces already cut at their placeholders, each
        # list's own values filled in where its marks are; text is joined and tidied.
        html_pieces: list[tuple[list[str], Mapping[str, str]]] = []
        html_blocks: list[tuple[list[str], Mapping[str, str]]] = []
        text_toc: list[str] = []
        text_parts: list[str] = []
        first_trending = len(matched)
        section_html = f"<strong>{html_escape(TRENDING_HEADING)}</strong>"
        for number, (item, paper) in enumerate(zip(ranked, papers, strict=True), start=1):
            html_block, text_block, html_entry, text_entry = self._blocks[(paper.id, abstract_chars)]
            # The email names the two strongest reasons; the web page and preview show them all.
            why = inert(" · ".join(item.reasons[:EMAIL_REASONS]))
            opens = number - 1 == first_trending
            if number - 1 < first_trending:
                # The list at the top names the picks; "Also trending" stays its own section below.
                html_pieces.append((html_entry, _NO_FILLS))
                text_toc.append(text_entry.replace(NUMBER_MARK, str(number)))
            block_fills = {"LWHY": html_escape(why), "LSECTION": section_html if opens else ""}
            html_blocks.append((html_block, block_fills))
            text_parts.append(
                text_block.replace(WHY_MARK, why)
                .replace(NUMBER_MARK, str(number))
                .replace(SECTION_MARK, f"{TRENDING_HEADING}\n" if opens else "")
            )
        titles = [paper.title for paper in papers[: len(matched)]]
        subject = digest_subject(self.edition, titles, kind=kind)
        count = f"{len(titles)} paper{'s' if len(titles) != 1 else ''}"
        head = preheader(
            [{"reasons": ranked[0].reasons, "title": titles[0]}, *({"title": t} for t in titles[1:])]
        )
        fills = {
            "PBXLSUBJECTPBX": subject,
            "PBXLPREHEADERPBX": head,
            "PBXLCOUNTPBX": count,
            "PBXLSUMMARYPBX": inert(summary),
        }
        # The list's own marks sit in the frame only (paper text is made inert), so
        # only the frame is searched, not every paper's block.
        html_fills = {mark[3:-3]: html_escape(value) for mark, value in fills.items()}
        html_parts = _assemble(
            [
                (html_head, html_fills),
                *html_pieces,
                (html_after_toc, html_fills),
                *html_blocks,
                (html_tail, html_fills),
            ]
        )
        text_head, text_after_toc, text_tail = (
            _fill_marks(part, fills) for part in (text_head, text_after_toc, text_tail)
        )
        text = tidy_text("".join([text_head, *text_toc, text_after_toc, *text_parts, text_tail]))
        return CompiledDigest(
            subject=subject,
            paper_ids=tuple(item.paper_id for item in ranked),
            html_parts=html_parts,
            text_parts=_compile(text),
            html_bytes=_parts_bytes(html_parts),
            also_trending=tuple(item.paper_id for item in trending or ()),
            kind=kind,
        )

    def personal_values(self, reader: Reader, compiled: CompiledDigest) -> dict[str, str]:
        links = email_links(subscriber_id=reader.subscriber_id, token_version=reader.token_version)
        values = {
            "UNSUB": links["unsubscribe_url"],
            "MANAGE": links["manage_url"],
            "VIEW": view_url(delivery_id=reader.delivery_id, token_version=reader.token_version),
        }
        votes = make_feedback_tokens(reader.subscriber_id, compiled.paper_ids, reader.token_version)
        values.update(zip(compiled.vote_keys, votes, strict=True))
        return values

    def message_parts(self, reader: Reader, delivery_id: int | None = None) -> "PersonalDigest | None":
        """One reader's finished digest; with a delivery id its headers carry that delivery's Message-ID."""
        compiled = self.compiled_for(reader)
        if compiled is None:
            return None
        if delivery_id is not None and reader.delivery_id != delivery_id:
            # The "view in browser" link is signed for this delivery too.
            reader = dataclasses.replace(reader, delivery_id=delivery_id)
        values = self.personal_values(reader, compiled)
        html, text = compiled.personalise(values)
        return PersonalDigest(
            subject=compiled.subject,
            html=html,
            text=text,
            paper_ids=compiled.paper_ids,
            kind=compiled.kind,
            headers=digest_headers(
                unsubscribe_url=values["UNSUB"],
                edition=self.edition,
                delivery_id=delivery_id,
                frequency=compiled.frequency,
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
    """What a rendered digest is: its kind, and for a catch-up the window's first day."""

    kind: str = DAILY
    start: date | None = None


def _split_marked(rendered: str, count: int) -> tuple[list[str], list[str]]:
    """Cut a rendered part at the paper marks: [head, block 1..n, tail] and, within
    the head, the list of titles: [before, entry 1..n, after]."""
    blocks = rendered.split(ITEM_MARK)
    toc = blocks[0].split(TOC_MARK)
    if len(blocks) != count + 2 or len(toc) != count + 2:
        raise ValueError("the digest templates must mark each paper's block and title entry")
    return blocks, toc


def fits(compiled: CompiledDigest) -> bool:
    placeholders = (len(compiled.html_parts) - 1) // 2
    return compiled.html_bytes + placeholders * MAX_PLACEHOLDER_EXPANSION <= MAX_HTML_BYTES


def week_start(edition: date) -> date:
    """The Monday of the week a weekly edition covers: the week of its last covered day."""
    last = edition - timedelta(days=1)
    return last - timedelta(days=last.weekday())


def edition_label(edition: date, kind: str, *, start: date | None = None) -> str:
    """How a digest names its edition: the day, the week for weekly digests, and
    for a catch-up what it is and the days it covers."""
    if kind == WEEKLY:
        return f"Week of {week_start(edition):%-d %B %Y}"
    if kind == CATCHUP:
        days = date_range(start, edition - timedelta(days=1)) if start else f"{edition:%A %-d %B %Y}"
        return f"Catch-up: the best of what you missed · {days}"
    return f"{edition:%A %-d %B %Y}"


def date_range(first: date, last: date) -> str:
    """ "10 – 23 November 2026", "28 October – 3 November 2026", "29 December 2026 – 4 January 2027"."""
    if first.year != last.year:
        return f"{first.strftime('%-d %B %Y')} – {last.strftime('%-d %B %Y')}"
    if first.month != last.month:
        return f"{first.strftime('%-d %B')} – {last.strftime('%-d %B %Y')}"
    return f"{first.day} – {last.strftime('%-d %B %Y')}"


def digest_subject(edition: date, titles: list[str], *, kind: str = "daily") -> str:
    count = len(titles)
    papers = f"{count} paper{'s' if count != 1 else ''}"
    if kind == "weekly":
        head = f"{papers} for the week of {week_start(edition):%-d %b}: "
    elif kind == "catchup":
        head = f"Catch-up, {papers} you missed: "
    else:
        head = f"{papers} for {edition:%a %-d %b}: "
    top = " ".join(titles[0].split()) if titles else ""
    return head + truncated(top, max(20, 110 - len(head)))


def preheader(items: list[dict]) -> str:
    reasons = items[0]["reasons"][0] if items and items[0]["reasons"] else ""
    others = [item["title"] for item in items[1:3]]
    text = reasons
    if others:
        text += (" · Also: " if text else "Also: ") + " · ".join(others)
    return truncated(text, 140)


def truncated(text: str, limit: int) -> str:
    """``Truncator(text).chars(limit)``, which walks every character in Python to
    skip combining marks; text without any (most titles and reasons) is cut at
    once, to the same result."""
    if limit > 0:
        text = unicodedata.normalize("NFC", text)
        if text.isascii() or not any(unicodedata.combining(char) for char in set(text) if char > "\x7f"):
            if len(text) <= limit:
                return text
            return add_truncation_text(text[: calculate_truncate_chars_length(limit, None)], None)
    return Truncator(text).chars(limit)


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
    frequency: str = "daily",
) -> dict[str, str]:
    """List-Unsubscribe (RFC 8058), List-Id (the daily or the weekly list) and, for a
    real delivery, its stable Message-ID."""
    headers = list_headers(unsubscribe_url=unsubscribe_url, frequency=frequency)
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
