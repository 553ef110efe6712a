import dataclasses
import re
from datetime import date

import pytest

from digest.compose import MAX_HTML_BYTES, DigestComposer, Reader, build_preferences, window_start
from digest.feedback import InvalidFeedbackToken, make_feedback_token, read_feedback_token
from digest.papers import safe_url
from tests.digest.builders import EDITION, YESTERDAY, make_paper

pytestmark = pytest.mark.django_db

HOSTILE_TITLE = '<script>alert("x")</script> "><img src=x onerror=alert(1)> PBXUNSUBPBX'


def reader(topics, *, size=8, interests="", sent=frozenset()):
    return Reader(
        subscriber_id=42,
        email="ada@example.org",
        token_version=1,
        preferences=build_preferences(topics=topics, interests=interests, digest_size=size, affinity=None),
        window_start=YESTERDAY,
        already_sent=frozenset(sent),
    )


def compose(r):
    return DigestComposer.for_edition(EDITION).message_parts(r)


def test_html_stays_under_gmail_clip_limit_with_200_long_papers(settings):
    settings.SITE_URL = "https://a-rather-long-hostname-for-the-digest-site.example.org"
    long_abstract = "Transformers " * 1200
    for n in range(200):
        make_paper(n, topics={"reasoning": 0.9}, upvotes=n, title="Long title " * 30, abstract=long_abstract)
    digest = compose(reader(["reasoning"], size=15))
    size = len(digest.html.encode())
    assert size <= MAX_HTML_BYTES
    assert len(digest.paper_ids) == 15
    assert "Transformers" in digest.text  # truncated, not dropped
    assert "…" in digest.text


def test_scraped_text_is_escaped_and_cannot_fill_placeholders(settings):
    settings.SITE_URL = "https://digest.example.org"
    make_paper(
        1,
        topics={"safety": 0.9},
        title=HOSTILE_TITLE,
        abstract="<b>bold</b> & javascript:alert(1)",
        authors=["<script>evil()</script>"],
        github_repo="javascript:alert(1)",
        project_page="https://ok.example.org/project",
    )
    digest = compose(reader(["safety"]))
    assert "<script>" not in digest.html
    assert "&lt;script&gt;" in digest.html
    assert "<img src=x" not in digest.html
    assert 'href="javascript:' not in digest.html
    assert "https://ok.example.org/project" in digest.html
    # The text part is plain text: no HTML entities, the title as written.
    assert '<script>alert("x")</script>' in digest.text
    assert "&lt;" not in digest.text
    # A placeholder inside scraped text stays inert.
    assert "/unsubscribe/" not in digest.subject
    assert "PB\u200bXUNSUBPB\u200bX" in digest.text


def test_email_has_links_reasons_footer_and_dark_mode(settings):
    settings.SITE_URL = "https://digest.example.org"
    settings.SENDER_POSTAL_ADDRESS = "Paperboy, 1 Example Street, Cambridge"
    make_paper(1, topics={"code": 0.9}, github_repo="https://github.com/example/repo", upvotes=77)
    digest = compose(reader(["code"], interests="program synthesis"))
    for part in (digest.html, digest.text):
        assert "https://huggingface.co/papers/2611.00001" in part
        assert "https://arxiv.org/abs/2611.00001" in part
        assert "https://arxiv.org/pdf/2611.00001" in part
        assert "https://github.com/example/repo" in part
        assert "Paperboy, 1 Example Street, Cambridge" in part
        assert "https://digest.example.org/unsubscribe/" in part
        assert "https://digest.example.org/manage/" in part
        assert "https://digest.example.org/feedback/" in part
    assert "Why: Topic Code" in digest.text
    assert "prefers-color-scheme: dark" in digest.html
    assert '<link rel="stylesheet"' not in digest.html
    assert digest.headers["List-Unsubscribe"].startswith("<https://digest.example.org/unsubscribe/")
    assert digest.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.search(r"1 paper for Tue 24 Nov: ", digest.subject)


def test_images_are_optional_and_carry_alt_text(settings):
    make_paper(
        1, topics={"video": 0.9}, thumbnail_url="https://cdn.example.org/thumb.png", title="Video world"
    )
    settings.DIGEST_IMAGES = True
    assert 'alt="Video world"' in compose(reader(["video"])).html
    settings.DIGEST_IMAGES = False
    assert "thumb.png" not in compose(reader(["video"])).html


def test_readers_with_same_preferences_share_one_render():
    make_paper(1, topics={"agents": 0.9})
    composer = DigestComposer.for_edition(EDITION)
    a = composer.compiled_for(reader(["agents"]))
    b = composer.compiled_for(reader(["agents"]))
    assert a is b
    first = composer.message_parts(reader(["agents"]))
    other = Reader(**{**reader(["agents"]).__dict__, "subscriber_id": 43})
    second = composer.message_parts(other)
    assert first.html != second.html  # personal links differ
    assert first.subject == second.subject


def test_alike_readers_skip_ranking_but_one_who_already_got_papers_does_not(monkeypatch):
    papers = [make_paper(n, topics={"agents": 0.9}, upvotes=n) for n in range(1, 4)]
    composer = DigestComposer.for_edition(EDITION)
    first = composer.compiled_for(reader(["agents"]))
    ranked = []
    monkeypatch.setattr(composer, "ranked_for", lambda r: ranked.append(r) or [])
    # Alike in everything the digest depends on: the list the first reader got, unranked.
    assert composer.compiled_for(Reader(**{**reader(["agents"]).__dict__, "subscriber_id": 7})) is first
    assert ranked == []
    # Not alike: a reader who already received a paper is ranked (and cut) again.
    assert composer.compiled_for(reader(["agents"], sent={papers[2].pk})) is None
    assert len(ranked) == 1
    # Papers received in earlier digests, none of them in this window, change nothing.
    assert composer.compiled_for(reader(["agents"], sent={max(p.pk for p in papers) + 1000})) is first
    assert len(ranked) == 1
    # Nor a reader with another digest size.
    composer.compiled_for(reader(["agents"], size=2))
    assert len(ranked) == 2


def test_readers_whose_topics_match_nothing_are_remembered_as_such(monkeypatch):
    make_paper(1, topics={"agents": 0.9})
    composer = DigestComposer.for_edition(EDITION)
    assert composer.compiled_for(reader(["robotics"])) is None
    monkeypatch.setattr(composer, "ranked_for", lambda r: pytest.fail("ranked again"))
    assert composer.compiled_for(reader(["robotics"])) is None


@pytest.mark.parametrize("seed", range(4))
def test_subject_and_preheader_cut_text_as_djangos_truncator_does(seed):
    import random

    from django.utils.text import Truncator

    from digest.compose import truncated

    rng = random.Random(seed)
    # Plain ASCII; other letters and marks; and combining accents (e + U+0301).
    letters = ["abcdefgh ij.,-", "abc de·…é“”", "abc de·…é\u0301"][seed % 3]
    for _ in range(2000):
        text = "".join(rng.choice(letters) for _ in range(rng.randint(0, 160)))
        for limit in (0, 1, 2, 20, 90, 140):
            assert truncated(text, limit) == Truncator(text).chars(limit), (text, limit)


def test_html_put_together_from_pieces_is_the_html_cut_at_its_placeholders():
    from html import escape

    from digest.compose import PBX_SYNTAX, _compile, _emit

    for n in range(1, 12):
        title = HOSTILE_TITLE if n == 3 else f"Paper {n} with “quotes” & PBX in it"
        make_paper(n, topics={"agents": 0.9} if n < 9 else {}, upvotes=n * 10, title=title)
    compiled = DigestComposer.for_edition(EDITION).compiled_for(reader(["agents"], interests="PBXUNSUBPBX"))
    assert compiled.also_trending  # the section mark was filled in a block too
    written = _emit(compiled.html_parts, PBX_SYNTAX)
    assert _compile(written) == compiled.html_parts
    assert compiled.html_bytes == len(written.encode())
    names = set(compiled.html_parts[1::2])
    assert {"UNSUB", "MANAGE", "VIEW"} <= names
    assert names - {"UNSUB", "MANAGE", "VIEW"} == {f"FB{paper_id}" for paper_id in compiled.paper_ids}
    assert "PBXL" not in written  # every mark of the list's own values is filled
    assert written.count("Topic Agents") >= 8  # each pick's why line
    assert "Also trending (not matched to your interests)" in written
    assert escape(compiled.subject) in written


def test_the_html_keeps_to_two_byte_characters():
    make_paper(1, topics={"agents": 0.9}, title="Agents · “quoted” …")
    digest = compose(reader(["agents"]))
    assert max(map(ord, digest.html)) <= 0xFFFF
    assert "&#128077;" in digest.html and "&#128078;" in digest.html


def test_feedback_tokens_are_signed_per_reader_and_paper(settings):
    token = make_feedback_token(42, 7, 1)
    target = read_feedback_token(token)
    assert (target.subscriber_id, target.paper_id, target.token_version) == (42, 7, 1)
    assert make_feedback_token(42, 8, 1) != token
    for bad in (token[:-1], token.replace(".", ".0", 1), "", "x" * 500, "a.b.c.d", "2a.zz.1." + token[-16:]):
        with pytest.raises(InvalidFeedbackToken):
            read_feedback_token(bad)
    settings.SECRET_KEY = "another-secret"
    with pytest.raises(InvalidFeedbackToken):
        read_feedback_token(token)


def test_window_start_for_daily_weekly_and_returning_readers():
    assert window_start(edition=EDITION, frequency="daily", last_digest_on=None) == YESTERDAY
    assert str(window_start(edition=EDITION, frequency="weekly", last_digest_on=None)) == "2026-11-17"
    assert str(window_start(edition=EDITION, frequency="weekly", last_digest_on=EDITION.replace(day=21))) == (
        "2026-11-21"
    )


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://github.com/a/b", True),
        ("http://example.org/x?y=1", True),
        ("javascript:alert(1)", False),
        ("data:text/html,hi", False),
        ('https://x.org/"onmouseover="', False),
        ("", False),
    ],
)
def test_safe_url_keeps_only_plain_http_links(url, kept):
    assert bool(safe_url(url)) is kept


def test_digest_assembled_from_shared_paper_blocks_matches_a_fresh_render():
    make_paper(1, topics={"agents": 0.9, "reasoning": 0.6}, upvotes=30)
    make_paper(2, topics={"agents": 0.7}, upvotes=20, title='A <b>bold</b> & quoted "title"')
    make_paper(3, topics={"reasoning": 0.9}, upvotes=10)
    readers = [
        reader(["agents"]),
        reader(["reasoning"], interests="tool use"),
        reader(["agents", "reasoning"], size=2),
        reader(["agents", "reasoning"]),
    ]
    shared = DigestComposer.for_edition(EDITION)
    for r in readers:
        warm = shared.message_parts(r)  # later lists reuse blocks compiled for earlier ones
        fresh = DigestComposer.for_edition(EDITION).message_parts(r)
        assert (warm.subject, warm.html, warm.text) == (fresh.subject, fresh.html, fresh.text)
        assert "PBXITEMPBX" not in warm.html + warm.text
        assert "PBXL" not in warm.html + warm.text
    both = shared.message_parts(readers[3])
    assert "Why: Topic Agents" in both.text
    assert "1. " in both.text and "3. " in both.text
    assert "3 papers picked for you" in both.html
    assert "A &lt;b&gt;bold&lt;/b&gt; &amp; quoted &quot;title&quot;" in both.html


def test_readers_who_differ_only_in_digest_size_share_one_ranking():
    for n in range(1, 12):
        make_paper(n, topics={"agents": 0.5 + n / 40}, upvotes=n)
    composer = DigestComposer.for_edition(EDITION)
    long = composer.ranked_for(reader(["agents"], size=10))
    short = composer.ranked_for(reader(["agents"], size=3))
    assert len(composer._rankings) == 1
    assert [i.paper_id for i in short] == [i.paper_id for i in long[:3]]
    alone = DigestComposer.for_edition(EDITION).ranked_for(reader(["agents"], size=3))
    assert [i.paper_id for i in alone] == [i.paper_id for i in short]


def trending_reader(topics, *, interests="", show=True):
    return Reader(
        subscriber_id=42,
        email="ada@example.org",
        token_version=1,
        preferences=build_preferences(
            topics=topics, interests=interests, digest_size=8, affinity=None, show_trending=show
        ),
        window_start=YESTERDAY,
    )


def test_also_trending_is_a_separate_labelled_section_after_the_matches():
    matched = make_paper(1, topics={"code": 0.9}, title="Code repair at scale", upvotes=2)
    popular = make_paper(2, topics={"video": 0.9}, title="A very popular video model", upvotes=500)
    composer = DigestComposer.for_edition(EDITION)
    compiled = composer.compiled_for(trending_reader(["code"]))
    assert compiled.paper_ids == (matched.pk, popular.pk)
    assert compiled.also_trending == (popular.pk,)
    digest = composer.message_parts(trending_reader(["code"]))
    head, section = digest.text.split("Also trending (not matched to your interests)")
    assert "Code repair at scale" in head and "A very popular video model" not in head
    assert "Why: Also trending: 500 upvotes on Hugging Face" in section
    assert "Also trending (not matched to your interests)" in digest.html
    assert digest.subject.startswith("1 paper for")


def test_readers_who_turn_trending_off_get_only_matches():
    make_paper(1, topics={"code": 0.9}, upvotes=2)
    make_paper(2, topics={"video": 0.9}, upvotes=500)
    compiled = DigestComposer.for_edition(EDITION).compiled_for(trending_reader(["code"], show=False))
    assert compiled.also_trending == () and len(compiled.paper_ids) == 1


def test_an_interest_that_matches_nothing_sends_no_email_not_even_trending():
    for n in range(6):
        make_paper(n, topics={"agents": 0.9}, title=f"LLM agents with tools {n}", upvotes=n)
    composer = DigestComposer.for_edition(EDITION)
    assert composer.compiled_for(trending_reader([], interests="spiking neural networks")) is None
    assert composer.compiled_for(trending_reader([], interests="LLM agents")) is not None


def _reader(topics, **fields):
    base = reader(topics)
    return dataclasses.replace(base, **fields)


def test_weekly_digest_names_its_week_in_heading_subject_and_list_id(settings):
    settings.SITE_URL = "https://digest.example.org"
    make_paper(1, topics={"video": 0.9}, title="Video diffusion at scale")
    weekly = compose(_reader(["video"], frequency="weekly", delivery_id=7))
    # Edition Tuesday 24 November covers up to Monday 23 November: the week of the 23rd.
    assert "Week of 23 November 2026" in weekly.html
    assert "Week of 23 November 2026" in weekly.text
    assert "Tuesday 24 November" not in weekly.html
    assert weekly.subject.startswith("1 paper for the week of 23 Nov: ")
    assert weekly.headers["List-Id"] == "Paperboy weekly digest <weekly.digest.digest.example.org>"

    daily = compose(_reader(["video"], delivery_id=8))
    assert "Tuesday 24 November 2026" in daily.html
    assert "Week of" not in daily.html
    assert daily.subject.startswith("1 paper for Tue 24 Nov: ")
    assert daily.headers["List-Id"] == "Paperboy daily digest <daily.digest.digest.example.org>"


def test_week_label_is_the_monday_of_the_last_covered_day():
    from digest.compose import edition_label, week_start

    assert week_start(date(2026, 11, 30)) == date(2026, 11, 23)  # a Monday edition covers 23–29
    assert week_start(date(2026, 11, 24)) == date(2026, 11, 23)
    assert week_start(date(2026, 11, 23)) == date(2026, 11, 16)
    assert edition_label(date(2026, 12, 7), "weekly") == "Week of 30 November 2026"
    assert edition_label(date(2026, 12, 7), "daily") == "Monday 7 December 2026"


def test_catch_up_digest_says_so():
    make_paper(1, topics={"video": 0.9})
    digest = compose(_reader(["video"], kind="catchup"))
    assert "Catch-up: the best of what you missed" in digest.html
    assert "Catch-up: the best of what you missed" in digest.text
    assert digest.subject.startswith("Catch-up")


def test_titles_of_the_issue_come_first_and_link_to_each_paper():
    papers = [make_paper(n, topics={"code": 0.9}, upvotes=100 - n, title=f"Code paper {n}") for n in range(3)]
    digest = compose(reader(["code"]))
    toc_end = digest.html.index("Code paper 2</a></li>") + 1
    for paper in papers:
        anchor = f'href="#p{paper.id}"'
        assert digest.html.index(anchor) < toc_end  # the list of titles is at the top
        assert digest.html.count(f'id="p{paper.id}"') == 1  # ...and each entry has its target
        assert digest.html.index(f'id="p{paper.id}"') > toc_end
    head = digest.text.split("----")[0]
    assert "In this issue:\n1. Code paper 0\n2. Code paper 1\n3. Code paper 2\n" in head


def test_items_carry_a_tldr_and_abstracts_only_for_readers_who_want_them():
    make_paper(
        1,
        topics={"code": 0.9},
        abstract="First we explain. Then a very particular second sentence follows.",
        ai_summary="",
    )
    make_paper(2, topics={"code": 0.8}, ai_summary="Hugging Face says this in one line.")
    short = compose(reader(["code"]))
    for part in (short.html, short.text):
        assert "First we explain." in part
        assert "Hugging Face says this in one line." in part
        assert "very particular second sentence" not in part
    assert "TL;DR: First we explain." in short.text

    full = compose(_reader(["code"], with_abstracts=True))
    for part in (full.html, full.text):
        assert "very particular second sentence" in part


def test_upvote_count_never_wraps_away_from_its_mark():
    make_paper(1, topics={"code": 0.9}, upvotes=212)
    digest = compose(reader(["code"]))
    assert '<span style="white-space:nowrap">▲&nbsp;212</span>' in digest.html
    assert "▲ 212" not in digest.html


def test_view_in_browser_link_is_signed_for_the_delivery(settings):
    from digest.signed_links import read_view_token

    settings.SITE_URL = "https://digest.example.org"
    make_paper(1, topics={"code": 0.9})
    digest = compose(_reader(["code"], delivery_id=1234))
    match = re.search(
        r'href="https://digest.example.org/digest/([^/"]+)/"[^>]*>View in browser<', digest.html
    )
    assert match
    ref = read_view_token(match.group(1))
    assert (ref.id, ref.token_version) == (1234, 1)
    assert f"View in your browser: https://digest.example.org/digest/{match.group(1)}/" in digest.text
