"""A listing table laid out for a terminal (output.Layout): From and Subject narrowed and cut by
display width, columns left out in a fixed order, sizes and dates for people."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from popctl.output import Layout, render, short_date
from popctl.output.table import FLEXIBLE_MINIMUM
from popctl.output.textwidth import truncate, wcswidth

TEXT = st.text(st.sampled_from(list("abcXYZ019 .,:@<>-_éüß中文字日本語한국어📦🎉✉👍🏽\u0301")),
               max_size=70)
UID = st.text(st.sampled_from(list("0123456789abcdef")), min_size=1, max_size=32)


def table(records: list[dict[str, object]], width: int | None, human: bool = True) -> str:
    out = io.StringIO()
    render(records, "table", out, layout=Layout(width=width, human=human))
    return out.getvalue()


# --- truncate ------------------------------------------------------------------------------------


def test_truncate_counts_wide_characters_and_never_splits_one() -> None:
    assert truncate("会議の議事録", 12) == "会議の議事録"
    assert truncate("会議の議事録", 11) == "会議の議事…"  # 10 columns and the ellipsis
    assert truncate("会議の議事録", 10) == "会議の議…"  # a wide character does not fit in 1
    assert truncate("abc def", 5) == "abc…"  # no space left before the ellipsis
    assert truncate("👍🏽👍🏽👍🏽", 5) == "👍🏽👍🏽…"  # the skin tone stays with its hand


@settings(max_examples=200, deadline=None)
@given(TEXT, st.integers(1, 40))
def test_truncate_fits_and_keeps_a_prefix(text: str, width: int) -> None:
    cut = truncate(text, width)
    assert wcswidth(cut) <= width
    if wcswidth(text) <= width:
        assert cut == text
    else:
        assert cut.endswith("…") and text.startswith(cut[:-1].rstrip("\u200d"))
        # As much as fits: at most one column lost (to a wide character), unless a space or
        # joiner was dropped before the ellipsis.
        after = text[len(cut) - 1]
        assert wcswidth(cut) >= width - 1 or after.isspace() or after == "\u200d"


# --- dates and sizes -----------------------------------------------------------------------------


def test_short_date_is_local_and_short_this_year() -> None:
    tokyo = timezone(timedelta(hours=9))
    now = datetime(2026, 12, 5, 12, 0, tzinfo=tokyo)
    assert short_date("2026-10-05T21:43:45-07:00", now) == "Oct 06 13:43"  # in now's zone
    assert short_date("2025-11-30T08:00:00+00:00", now) == "2025-11-30"
    assert short_date("2025-12-31T20:00:00+00:00", now) == "Jan 01 05:00"  # this year in Tokyo
    assert short_date("not a date", now) == "not a date"


def test_terminal_table_shows_human_sizes_and_short_dates() -> None:
    records = [{"number": 1, "size": 2 * 1024 * 1024, "date": "2020-01-02T03:04:05+00:00"},
               {"number": 2, "size": 512, "date": None}]
    assert table(records, None) == (
        "  number    size  date\n"
        "--------  ------  ----------\n"
        "       1    2.0M  2020-01-02\n"
        "       2     512\n")
    assert table(records, None, human=False) == table(records, 10**6, human=False)


# --- fitting -------------------------------------------------------------------------------------


def listing(n: int, uid: str = "0123456789abcdef0123456789abcdef") -> list[dict[str, object]]:
    return [{"number": i, "size": 1000 * i, "uid": uid,
             "from": f"Somebody With A Long Name {i} <somebody{i}@example.org>",
             "subject": f"A subject that goes on and on about item number {i}",
             "date": "2020-01-02T03:04:05+00:00"} for i in range(1, n + 1)]


def header(text: str) -> list[str]:
    return text.splitlines()[0].split()


def test_columns_are_left_out_in_the_documented_order() -> None:
    records = listing(3)
    assert header(table(records, 200)) == ["number", "size", "uid", "from", "subject", "date"]
    assert header(table(records, 100)) == ["number", "size", "from", "subject", "date"]
    assert header(table(records, 60)) == ["number", "size", "from", "subject"]
    assert header(table(records, 40)) == ["number", "size", "subject"]
    assert header(table(records, 30)) == ["number", "subject"]
    short = listing(3, uid="00000001527d2b3f")  # Dovecot's 16-digit UIDs stay at 120
    assert header(table(short, 120)) == ["number", "size", "uid", "from", "subject", "date"]


def test_from_and_subject_share_the_room_widest_first() -> None:
    records = [{"number": 1, "from": "a" * 50, "subject": "b" * 15}]
    lines = table(records, 50).splitlines()
    assert lines[2] == "       1  " + "a" * 22 + "…  " + "b" * 15  # 15 fits: only From gives
    assert all(len(line) == 50 for line in lines[1:])
    records[0]["subject"] = "b" * 40
    # 38 columns for both; Subject keeps its minimum of 20, From gets the rest.
    assert table(records, 50).splitlines()[2] == "       1  " + "a" * 17 + "…  " + "b" * 19 + "…"
    records[0]["subject"] = "b" * 60
    assert table(records, 80).splitlines()[2] == "       1  " + "a" * 33 + "…  " + "b" * 33 + "…"
    assert header(table(records, 40)) == ["number", "subject"]  # 16 + 20 would not fit


def test_a_table_without_from_or_subject_is_not_cut() -> None:
    records = [{"number": 1, "uid": "u" * 70}]
    assert table(records, 20) == table(records, None)


@st.composite
def listings(draw: st.DrawFn) -> list[dict[str, object]]:
    keys = draw(st.lists(st.sampled_from(["number", "size", "uid", "from", "subject", "date",
                                          "deleted"]), min_size=1, unique=True))
    value = {"number": st.integers(1, 10**5), "size": st.integers(0, 10**10), "uid": UID,
             "from": TEXT, "subject": TEXT, "date": st.just("2021-03-04T05:06:07+01:00"),
             "deleted": st.booleans()}
    return draw(st.lists(st.fixed_dictionaries({k: st.one_of(st.none(), value[k])
                                                for k in keys}), min_size=1, max_size=5))


@settings(max_examples=150, deadline=None)
@given(listings(), st.integers(30, 200))
def test_a_fitted_table_fits_and_is_the_unfitted_one_when_there_is_room(
        records: list[dict[str, object]], width: int) -> None:
    full = table(records, None)
    fitted = table(records, width)
    flexible = any(key in FLEXIBLE_MINIMUM for key in records[0])
    if max(map(wcswidth, full.splitlines())) <= width or not flexible:
        assert fitted == full
    else:
        assert all(wcswidth(line) <= width for line in fitted.splitlines()), fitted
        assert len(fitted.splitlines()) == len(full.splitlines())


def test_the_table_benchmark_runs() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "table_render.py"
    result = subprocess.run([sys.executable, str(script), "--reps", "1", "--rows", "20"],
                            capture_output=True, text=True, timeout=120, check=True)
    assert "table minus json" in result.stdout and "import tabulate" in result.stdout
