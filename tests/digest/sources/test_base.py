from datetime import UTC, datetime

import pytest

from digest.sources import base, detect_format


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2401.01234", "2401.01234"),
        ("2401.01234v3", "2401.01234"),
        ("arXiv:2401.01234v1", "2401.01234"),
        (" https://arxiv.org/abs/2401.01234v2 ", "2401.01234"),
        ("https://arxiv.org/pdf/2401.01234v2.pdf", "2401.01234"),
        ("https://huggingface.co/papers/2401.01234", "2401.01234"),
        ("0704.0001", "0704.0001"),
        ("hep-th/9901001v2", "hep-th/9901001"),
        ("math.AG/0601001", "math.AG/0601001"),
    ],
)
def test_normalise_arxiv_id_strips_prefixes_and_version(raw, expected):
    assert base.normalise_arxiv_id(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "not-an-id", "2401.123", "2401.01234; DROP TABLE", 2401.01234, None, ["2401.01234"]]
)
def test_normalise_arxiv_id_rejects_junk(raw):
    with pytest.raises(ValueError):
        base.normalise_arxiv_id(raw)


def test_clean_text_collapses_hard_line_breaks_and_runs_of_spaces():
    assert (
        base.clean_text("Sparse  Mixture of\n  Adapters\tfor\r\nTuning ")
        == "Sparse Mixture of Adapters for Tuning"
    )


def test_clean_text_removes_nul_and_control_characters_and_ignores_wrong_types():
    assert base.clean_text("a\x00b\x07c") == "a b c"
    assert base.clean_text(42) == ""
    assert base.clean_text(None) == ""


def test_clean_url_keeps_only_http_urls():
    assert base.clean_url("https://github.com/a/b") == "https://github.com/a/b"
    assert base.clean_url("javascript:alert(1)") == ""
    assert base.clean_url("data:text/html,hi") == ""
    assert base.clean_url("https://x/" + "a" * 600) == ""
    assert base.clean_url(["https://github.com/a/b"]) == ""


def test_clean_int_and_lists_tolerate_wrong_types():
    assert base.clean_int("12") == 0
    assert base.clean_int(True) == 0
    assert base.clean_int(-5) == 0
    assert base.clean_int(7.9) == 7
    assert base.clean_str_list(["a", " a ", 3, "b"]) == ("a", "b")
    assert base.clean_str_list("a, b") == ()


def test_parse_timestamp_reads_zulu_and_rejects_junk():
    assert base.parse_timestamp("2024-03-12T00:41:10.113Z") == datetime(
        2024, 3, 12, 0, 41, 10, 113000, tzinfo=UTC
    )
    assert base.parse_timestamp("yesterday") is None
    assert base.parse_timestamp(1710000000) is None


def test_source_error_names_source_url_and_what_was_missing():
    error = base.SourceError("hf", "https://example.test/api", "no 'paper' object")
    assert (error.source, error.url, error.detail) == ("hf", "https://example.test/api", "no 'paper' object")
    assert str(error) == "hf: no 'paper' object (url: https://example.test/api)"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hf_api_2024.json", "hf"),
        ("hf_api_2026.json", "hf"),
        ("hf_page_escaped.html", "hf-page"),
        ("hf_page_reserialised.html", "hf-page"),
        ("arxiv_atom.xml", "arxiv"),
    ],
)
def test_detect_format_recognises_each_saved_response(fixture_text, name, expected):
    assert detect_format(fixture_text(name)) == expected


@pytest.mark.parametrize(
    "text", ["", "hello", '{"dailyPapers": []}', "\x00\x01", "<?xml version='1.0'?><rss/>"]
)
def test_detect_format_rejects_anything_else_with_a_clear_error(text):
    with pytest.raises(base.SourceError, match="unrecognised format"):
        detect_format(text, name="upload.bin")
