"""Rank the day's papers for one set of preferences.

Pure functions over plain data, so the nightly run can rank once per group of
subscribers who share preferences, and tests can drive it without a database.

How a paper is scored for a reader:

1. Relevance. Every chosen topic and every free-text interest is scored on its
   own, in [0, 1]: a topic by the paper's tag score for it, an interest by how
   much of its wording appears in the title, the HF keywords and the abstract.
   Topics the reader's votes have taught us about count too (see `Affinity`).
   The paper's relevance is the maximum of these, so one strong match is
   enough and many weak ones do not add up to noise.
2. Gate. Papers whose relevance is below `gate` are dropped.
3. Trend. Upvotes are turned into a percentile among the papers featured on the
   same day, so a quiet day's top paper competes with a busy day's.
4. Final score = (1 - trend_weight) * relevance + trend_weight * trend.
5. Order. Pinned papers that pass the gate go first; the rest by final score,
   with a light diversity penalty so one topic cannot fill the email.

Readers may also follow arXiv categories and authors (`follow_matches`): a
paper in a followed category is a candidate worth a fixed relevance and then
ranked like any other; a paper by a followed author always makes the list,
first, with the reason "Author: <name>".
"""

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

from digest.authors import AuthorIndex
from digest.sources.arxiv_categories import category_label

DEFAULT_GATE = 0.3
DEFAULT_TREND_WEIGHT = 0.35
DIVERSITY_DECAY = 0.85
# Relevance of a paper in a followed arXiv category: its primary one, or a cross-list.
CATEGORY_PRIMARY_RELEVANCE = 0.5
CATEGORY_RELEVANCE = 0.4
# Largest change, either way, that votes can make to a topic's weight.
MAX_AFFINITY = 0.3

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "how",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "over",
        "papers",
        "paper",
        "that",
        "the",
        "their",
        "this",
        "to",
        "toward",
        "towards",
        "using",
        "via",
        "with",
        "without",
        "about",
        "new",
        "novel",
        "based",
        "approach",
        "approaches",
        "method",
        "methods",
        "model",
        "models",
        "study",
        "studies",
        "work",
        "works",
        "anything",
        "stuff",
        "like",
    }
)


def stem(word: str) -> str:
    """A deliberately small stemmer: enough to match plurals and -ing/-ed forms."""
    if len(word) <= 4:
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes", "zes")):
        return word[:-2]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    out = []
    for word in _WORD.findall(text.lower()):
        for part in word.split("-") if "-" in word else (word,):
            if part and part not in STOPWORDS:
                out.append(stem(part))
    return out


@dataclass(frozen=True)
class Candidate:
    paper_id: int
    title: str
    abstract: str
    keywords: tuple[str, ...]
    topic_scores: dict[str, float]
    upvotes: int
    featured_on: date | None
    pinned: bool = False
    categories: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()


@dataclass
class PaperText:
    """A candidate's words, prepared once per run and shared by every interest."""

    title: frozenset[str]
    keywords: frozenset[str]
    abstract: frozenset[str]
    title_phrase: str
    body_phrase: str

    @classmethod
    def of(cls, candidate: Candidate) -> "PaperText":
        title_terms = terms(candidate.title)
        keyword_terms = terms(" ".join(candidate.keywords))
        abstract_terms = terms(candidate.abstract)
        return cls(
            title=frozenset(title_terms),
            keywords=frozenset(keyword_terms),
            abstract=frozenset(abstract_terms),
            title_phrase=" " + " ".join(title_terms) + " ",
            body_phrase=" " + " ".join(keyword_terms + abstract_terms) + " ",
        )


@dataclass(frozen=True)
class Interest:
    text: str
    terms: tuple[str, ...]

    @property
    def phrase(self) -> str:
        return " " + " ".join(self.terms) + " "


@lru_cache(maxsize=65536)
def parse_interest(text: str) -> Interest:
    return Interest(text=text, terms=tuple(dict.fromkeys(terms(text))))


def split_interests(raw: str) -> tuple[str, ...]:
    """Free-text interests are one per line, or separated by commas or semicolons."""
    parts = re.split(r"[\n,;]+", raw or "")
    return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))


def interest_score(interest: Interest, text: PaperText) -> float:
    """How well a free-text interest matches a paper, in [0, 1].

    Each word of the interest earns 1.0 if it is in the title, 0.85 in the HF
    keywords and 0.6 in the abstract; the score is their mean, so an interest
    only half present scores at most half. The whole phrase appearing in order
    lifts the score to 0.95 (title) or 0.8 (keywords/abstract).
    """
    if not interest.terms:
        return 0.0
    total = 0.0
    for term in interest.terms:
        if term in text.title:
            total += 1.0
        elif term in text.keywords:
            total += 0.85
        elif term in text.abstract:
            total += 0.6
    score = total / len(interest.terms)
    if len(interest.terms) > 1:
        phrase = interest.phrase
        if phrase in text.title_phrase:
            score = max(score, 0.95)
        elif phrase in text.body_phrase:
            score = max(score, 0.8)
    return score


@dataclass(frozen=True)
class Affinity:
    """What a reader's 👍 and 👎 votes taught us, as a weight change per topic.

    Each vote adds (+1 or -1) times the voted paper's tag score to each of its
    topics; the running total t becomes MAX_AFFINITY * tanh(t / 3), a change of
    at most ±30% that grows quickly for the first votes and then saturates.
    A chosen topic's relevance is multiplied by (1 + change). A topic the reader
    did not choose but keeps upvoting counts as a weak interest of its own,
    worth tag score * change / MAX_AFFINITY * 0.6.
    """

    weights: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_votes(cls, votes: Iterable[tuple[int, dict[str, float]]]) -> "Affinity":
        totals: dict[str, float] = defaultdict(float)
        for vote, topic_scores in votes:
            for slug, score in topic_scores.items():
                totals[slug] += vote * score
        weights = tuple(
            sorted(
                (slug, round(MAX_AFFINITY * math.tanh(total / 3), 3))
                for slug, total in totals.items()
                if abs(total) > 1e-9
            )
        )
        return cls(weights=weights)

    def as_dict(self) -> dict[str, float]:
        return dict(self.weights)


@dataclass(frozen=True)
class Preferences:
    topics: frozenset[str]
    interests: tuple[str, ...] = ()
    max_items: int = 8
    affinity: Affinity = field(default_factory=Affinity)
    categories: frozenset[str] = frozenset()
    authors: tuple[str, ...] = ()

    def key(self) -> tuple:
        """Subscribers whose keys are equal get the same ranked list."""
        return (
            tuple(sorted(self.topics)),
            self.interests,
            self.max_items,
            self.affinity.weights,
            *self.follows_key(),
        )

    def follows_key(self) -> tuple:
        return (tuple(sorted(self.categories)), self.authors)


@dataclass(frozen=True)
class RankedItem:
    paper_id: int
    score: float
    relevance: float
    trend: float
    reasons: tuple[str, ...]
    pinned: bool
    # By an author the reader follows: kept even past the reader's digest size.
    followed: bool = False


@dataclass(frozen=True)
class Match:
    relevance: float
    reasons: tuple[str, ...]
    primary: str
    by_author: bool = False


def trend_percentiles(candidates: Sequence[Candidate], *, by_day: bool = True) -> dict[int, float]:
    """Upvote percentile of each paper among the papers featured the same day
    (or, with by_day=False, among all the candidates: a week's best).

    1.0 is the day's most upvoted paper, 0.0 its least; ties share the average
    rank. Papers with no featured day (arXiv-only) get 0.
    """
    by_day_papers: dict[date | None, list[Candidate]] = defaultdict(list)
    result: dict[int, float] = {}
    for candidate in candidates:
        if candidate.featured_on is None:
            result[candidate.paper_id] = 0.0
        else:
            by_day_papers[candidate.featured_on if by_day else None].append(candidate)
    for day_papers in by_day_papers.values():
        if len(day_papers) == 1:
            result[day_papers[0].paper_id] = 1.0
            continue
        ordered = sorted(day_papers, key=lambda c: c.upvotes)
        last = len(ordered) - 1
        i = 0
        while i <= last:
            j = i
            while j < last and ordered[j + 1].upvotes == ordered[i].upvotes:
                j += 1
            value = ((i + j) / 2) / last
            for k in range(i, j + 1):
                result[ordered[k].paper_id] = value
            i = j + 1
    return result


class Ranker:
    """Ranks one night's candidates for many preference sets.

    Build it once per run; `rank()` is then called once per preference group.
    Topic display names turn slugs into reasons a reader understands.
    """

    def __init__(
        self,
        candidates: Sequence[Candidate],
        *,
        topic_names: dict[str, str] | None = None,
        gate: float = DEFAULT_GATE,
        trend_weight: float = DEFAULT_TREND_WEIGHT,
        trend_by_day: bool = True,
    ):
        self.candidates = list(candidates)
        self.topic_names = topic_names or {}
        self.gate = gate
        self.trend_weight = trend_weight
        self.trend = trend_percentiles(self.candidates, by_day=trend_by_day)
        self._follows: FollowIndex | None = None
        self._texts: dict[int, PaperText] = {}
        self._interest_cache: dict[tuple[str, int], float] = {}
        self._reasons: dict[str, str] = {}
        # Only papers carrying a tag can match a topic; index them by topic.
        self._by_topic: dict[str, list[Candidate]] = defaultdict(list)
        # ...and, for ranking by topics alone, by the topics whose tag passes the gate.
        self._gated_by_topic: dict[str, list[tuple[Candidate, float]]] = defaultdict(list)
        for candidate in self.candidates:
            for slug, tag in candidate.topic_scores.items():
                self._by_topic[slug].append(candidate)
                if tag and min(1.0, tag) >= gate:
                    self._gated_by_topic[slug].append((candidate, min(1.0, tag)))

    def _text(self, candidate: Candidate) -> PaperText:
        text = self._texts.get(candidate.paper_id)
        if text is None:
            text = self._texts[candidate.paper_id] = PaperText.of(candidate)
        return text

    def _interest(self, interest: Interest, candidate: Candidate) -> float:
        key = (interest.text, candidate.paper_id)
        score = self._interest_cache.get(key)
        if score is None:
            score = self._interest_cache[key] = interest_score(interest, self._text(candidate))
        return score

    def topic_label(self, slug: str) -> str:
        return self.topic_names.get(slug, slug.replace("-", " ").capitalize())

    def _topic_reason(self, slug: str) -> str:
        reason = self._reasons.get(slug)
        if reason is None:
            reason = self._reasons[slug] = f"Topic: {self.topic_label(slug)}"
        return reason

    def match(self, candidate: Candidate, prefs: Preferences, affinity: dict | None = None) -> Match | None:
        if affinity is None:
            affinity = prefs.affinity.as_dict()
        topic_scores = candidate.topic_scores
        scored: list[tuple[float, str, str]] = []  # (score, reason, primary key)
        for slug in prefs.topics:
            tag = topic_scores.get(slug)
            if tag:
                score = min(1.0, tag * (1 + affinity.get(slug, 0.0)) if affinity else tag)
                scored.append((score, self._topic_reason(slug), slug))
        for slug, change in affinity.items():
            if change > 0 and slug not in prefs.topics and slug in candidate.topic_scores:
                score = candidate.topic_scores[slug] * (change / MAX_AFFINITY) * 0.6
                scored.append((score, f"Like papers you upvoted: {self.topic_label(slug)}", slug))
        for raw in prefs.interests:
            interest = parse_interest(raw)
            score = self._interest(interest, candidate)
            if score > 0:
                scored.append((score, f"Interest: “{raw}”", f"interest:{raw}"))
        if not scored:
            return None
        scored.sort(key=lambda item: item[0], reverse=True)
        best = scored[0][0]
        if best < self.gate:
            return None
        # Name every match that is itself strong enough, strongest first.
        reasons = tuple(dict.fromkeys(reason for score, reason, _ in scored if score >= self.gate))
        return Match(relevance=best, reasons=reasons[:3], primary=scored[0][2])

    def _topic_matches(self, topics: frozenset[str], exclude: frozenset[int]):
        """What `match` finds for topics alone (no interests, no votes), most
        readers' case, from per-topic lists of the papers whose tag passes the
        gate: a paper with no such tag cannot pass, and only such tags are named
        as reasons. Thousands of distinct topic sets a night cost a few list
        walks each instead of a full match per paper."""
        found: dict[int, list[tuple[float, str]]] = {}
        papers: dict[int, Candidate] = {}
        for slug in topics:  # the order `match` scores them in, so ties break alike
            for candidate, score in self._gated_by_topic.get(slug, ()):
                entry = found.get(candidate.paper_id)
                if entry is None:
                    found[candidate.paper_id] = [(score, slug)]
                    papers[candidate.paper_id] = candidate
                else:
                    entry.append((score, slug))
        for paper_id, scored in found.items():
            if paper_id in exclude:
                continue
            if len(scored) > 1:
                scored.sort(key=lambda item: item[0], reverse=True)
            reasons = tuple(dict.fromkeys(self._topic_reason(slug) for _, slug in scored))
            yield papers[paper_id], Match(relevance=scored[0][0], reasons=reasons[:3], primary=scored[0][1])

    def _pool(self, prefs: Preferences) -> Iterable[Candidate]:
        if prefs.interests:
            return self.candidates
        slugs = set(prefs.topics) | {slug for slug, change in prefs.affinity.weights if change > 0}
        seen: set[int] = set()
        pool = []
        for slug in slugs:
            for candidate in self._by_topic.get(slug, ()):
                if candidate.paper_id not in seen:
                    seen.add(candidate.paper_id)
                    pool.append(candidate)
        return pool

    def rank(
        self, prefs: Preferences, *, exclude: frozenset[int] = frozenset(), extra: int = 0
    ) -> list[RankedItem]:
        """The ranked list for one preference set.

        `extra` asks for that many items beyond max_items, so a caller can drop
        papers a particular reader has already received and still fill the list.
        """
        limit = prefs.max_items + extra
        pinned: list[RankedItem] = []
        scored: list[tuple[RankedItem, str]] = []
        affinity = prefs.affinity.as_dict()
        follows = follow_matches(self, prefs, exclude)
        if affinity or prefs.interests:
            matches = (
                (candidate, self.match(candidate, prefs, affinity))
                for candidate in self._pool(prefs)
                if candidate.paper_id not in exclude
            )
        else:
            matches = self._topic_matches(prefs.topics, exclude)
        if follows:
            matches = with_follows(matches, follows)  # type: ignore[assignment]
        for candidate, found in matches:
            if found is None:
                continue
            trend = self.trend.get(candidate.paper_id, 0.0)
            score = (1 - self.trend_weight) * found.relevance + self.trend_weight * trend
            item = RankedItem(
                paper_id=candidate.paper_id,
                score=round(score, 6),
                relevance=round(found.relevance, 6),
                trend=round(trend, 6),
                reasons=found.reasons,
                pinned=candidate.pinned,
                followed=found.by_author,
            )
            if candidate.pinned or found.by_author:
                pinned.append(item)
            else:
                scored.append((item, found.primary))
        pinned.sort(key=lambda item: (not item.followed, -item.score, item.paper_id))
        chosen = pinned[: max(limit, sum(item.followed for item in pinned))]
        return chosen + diversify(scored, limit - len(chosen))


# --- Followed categories and authors -------------------------------------------------


class FollowIndex:
    """A ranker's candidates by arXiv category and by author, built on first use."""

    def __init__(self, candidates: Sequence[Candidate]):
        self.by_id = {candidate.paper_id: candidate for candidate in candidates}
        self.by_category: dict[str, list[Candidate]] = defaultdict(list)
        for candidate in candidates:
            for category in candidate.categories:
                self.by_category[category].append(candidate)
        self.authors = AuthorIndex((candidate.paper_id, candidate.authors) for candidate in candidates)


def follow_matches(
    ranker: Ranker, prefs: Preferences, exclude: frozenset[int]
) -> dict[int, tuple[Candidate, Match]]:
    """Papers in the reader's arXiv categories and by the authors they follow, with why.

    A category match is worth CATEGORY_PRIMARY_RELEVANCE when it is the paper's
    primary category, CATEGORY_RELEVANCE for a cross-list, and still has to pass
    the gate; an author match always qualifies."""
    if not prefs.categories and not prefs.authors:
        return {}
    if ranker._follows is None:
        ranker._follows = FollowIndex(ranker.candidates)
    index = ranker._follows
    found: dict[int, Match] = {}
    for category in sorted(prefs.categories):
        reason = f"Category: {category_label(category)}"
        for candidate in index.by_category.get(category, ()):
            if candidate.paper_id in exclude:
                continue
            primary = candidate.categories[0] == category
            relevance = CATEGORY_PRIMARY_RELEVANCE if primary else CATEGORY_RELEVANCE
            current = found.get(candidate.paper_id)
            if relevance < ranker.gate or (current and current.relevance >= relevance):
                continue
            found[candidate.paper_id] = Match(relevance, (reason,), f"category:{category}")
    for followed in prefs.authors:
        for paper_id, written in index.authors.papers_by(followed).items():
            if paper_id in exclude:
                continue
            current = found.get(paper_id)
            reasons: tuple[str, ...] = (f"Author: {written}",)
            if current and current.by_author:
                continue
            if current:
                reasons += current.reasons
            found[paper_id] = Match(1.0, reasons, f"author:{followed}", by_author=True)
    return {paper_id: (index.by_id[paper_id], match) for paper_id, match in found.items()}


def with_follows(
    matches: Iterable[tuple[Candidate, Match | None]], follows: dict[int, tuple[Candidate, Match]]
) -> Iterator[tuple[Candidate, Match | None]]:
    """The ranker's matches with the reader's category and author matches folded in:
    the stronger relevance counts, an author match leads the reasons."""
    follows = dict(follows)
    for candidate, found in matches:
        _, extra = follows.pop(candidate.paper_id, (candidate, None))
        if extra is None:
            yield candidate, found
        elif found is None:
            yield candidate, extra
        else:
            extra_leads = extra.by_author or extra.relevance > found.relevance
            lead, other = (extra, found) if extra_leads else (found, extra)
            reasons = tuple(dict.fromkeys(lead.reasons + other.reasons))[:3]
            relevance = max(found.relevance, extra.relevance)
            yield candidate, Match(relevance, reasons, lead.primary, by_author=extra.by_author)
    yield from follows.values()


def trending(ranker: "Ranker", limit: int, *, exclude: frozenset[int] = frozenset()) -> list[RankedItem]:
    """The day's most upvoted papers regardless of preferences, for readers who
    asked to get an email even when nothing matched."""
    pool = [c for c in ranker.candidates if c.paper_id not in exclude and c.featured_on is not None]
    pool.sort(key=lambda c: (-ranker.trend.get(c.paper_id, 0.0), -c.upvotes, c.paper_id))
    return [
        RankedItem(
            paper_id=c.paper_id,
            score=round(ranker.trend.get(c.paper_id, 0.0), 6),
            relevance=0.0,
            trend=round(ranker.trend.get(c.paper_id, 0.0), 6),
            reasons=("Trending: nothing matched your interests today",),
            pinned=c.pinned,
        )
        for c in pool[:limit]
    ]


def diversify(scored: list[tuple[RankedItem, str]], limit: int) -> list[RankedItem]:
    """Greedy pick by score, where each item already chosen for the same primary
    match multiplies the next one's score by DIVERSITY_DECAY."""
    if limit <= 0:
        return []
    remaining = sorted(scored, key=lambda pair: (-pair[0].score, pair[0].paper_id))
    used: dict[str, int] = defaultdict(int)
    chosen: list[RankedItem] = []
    while remaining and len(chosen) < limit:
        best_index = 0
        best_value = -1.0
        for index, (item, primary) in enumerate(remaining):
            value = item.score * (DIVERSITY_DECAY ** used[primary])
            if value > best_value:
                best_index, best_value = index, value
            # Sorted by score: nothing later can beat an undecayed value.
            if used[primary] == 0:
                break
        item, primary = remaining.pop(best_index)
        used[primary] += 1
        chosen.append(item)
    return chosen
