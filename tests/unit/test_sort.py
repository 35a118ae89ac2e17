"""list --sort: the order of the rows (popctl.app.mailbox.sorted_rows)."""

from __future__ import annotations

import pytest

from popctl.app.mailbox import sorted_rows
from popctl.cli.mailbox import option_sort
from popctl.errors import UsageError
from popctl.query import Row


def row(number: int, size: int, sender: str | None = None, date: str | None = None,
        uid: str | None = None) -> Row:
    r = Row(number, size, uid)
    r.sender, r.subject, r.date = sender, None, date
    return r


ROWS = [row(1, 300, "bob", "2026-01-01T10:00:00+09:00", "c"),
        row(2, 100, "Alice", None, None),
        row(3, 300, "alice", "2026-01-01T00:00:00+00:00", "a"),
        row(4, 200, None, "2025-12-31T23:30:00-05:00", "b")]


def numbers(keys: str) -> list[int]:
    return [r.number for r in sorted_rows(ROWS, option_sort(keys))]


def test_text_ignores_case_and_ties_keep_the_server_order() -> None:
    assert numbers("from") == [2, 3, 1, 4]  # Alice, alice (as listed), bob; no From last
    assert numbers("-from") == [1, 2, 3, 4]  # missing still last


def test_dates_compare_as_instants_and_missing_ones_come_last() -> None:
    # 1: 01:00Z, 3: 00:00Z, 4: 04:30Z (Dec 31 23:30 -05:00 is Jan 1 04:30 UTC); as text,
    # 4 would come first
    assert numbers("date") == [3, 1, 4, 2]
    assert numbers("-date") == [4, 1, 3, 2]


def test_several_keys_the_first_decides() -> None:
    assert numbers("-size,number") == [1, 3, 4, 2]
    assert numbers("-size,-number") == [3, 1, 4, 2]
    assert numbers("uid") == [3, 4, 1, 2]


def test_bad_sort_fields() -> None:
    with pytest.raises(UsageError, match="cannot sort by 'deleted'"):
        option_sort("deleted")
    with pytest.raises(UsageError, match="name at least one field to sort by"):
        option_sort(" , ")
    assert option_sort("-size, date") == (("size", True), ("date", False))
