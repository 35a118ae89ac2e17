"""The filter line: the command line's filters as words (no Textual needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from popctl.errors import UsageError
from popctl.query import Row
from popctl.tui.filters import parse_filter

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def row(number: int, size: int, sender: str, subject: str, age_days: float | None) -> Row:
    r = Row(number, size, f"u{number}")
    r.sender, r.subject = sender, subject
    r.date = None if age_days is None else (NOW - timedelta(days=age_days)).isoformat()
    return r


ROWS = [row(1, 500, "Alice <alice@example.org>", "Weekly report", 1),
        row(2, 2 * 1024 * 1024, "Bob <bob@example.com>", "Holiday photos", 10),
        row(3, 300, "Alice <alice@example.org>", "Re: photos", None),
        row(4, 5000, "Carol <c@example.net>", "Invoice 2026-02", 40)]


@pytest.mark.parametrize(("text", "numbers"), [
    ("", [1, 2, 3, 4]),
    ("from:alice", [1, 3]),
    ("FROM:^bob", [2]),
    ("subject:photos", [2, 3]),
    (">1M", [2]),
    ("<1k", [1, 3]),
    (">400 <6k", [1, 4]),
    ("older:7d", [2, 4]),
    ("newer:7d", [1]),  # undated mail matches no age filter, as on the command line
    ("photos alice", [3]),  # plain words: in From or Subject, all of them
    ('subject:"weekly report"', [1]),
    ("from:example.org newer:30d", [1]),
])
def test_the_filter_selects(text: str, numbers: list[int]) -> None:
    chosen = parse_filter(text)
    assert [r.number for r in ROWS if chosen(r, NOW)] == numbers


@pytest.mark.parametrize(("text", "error"), [
    (">lots", "invalid size 'lots'"),
    ("older:6m", "ambiguous"),
    ("from:(", "invalid regular expression '(' for from:"),
    ('subject:"open', "filter: No closing quotation"),
])
def test_a_wrong_word_is_named(text: str, error: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_filter(text)
    assert error in str(caught.value)
