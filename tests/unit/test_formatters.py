from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from popctl.errors import UsageError
from popctl.output import FORMATS, MAX_CELL_WIDTH, human_size, render, render_one, streams
from popctl.output import registry as renderers
from popctl.session import MAX_IN_FLIGHT

RECORDS: list[dict[str, object]] = [
    {"number": 1, "size": 1234, "uid": "0001", "from": "Alice <alice@example.org>",
     "subject": "Hello", "date": None},
    {"number": 12, "size": 56789, "uid": "abc", "from": "bob@example.net",
     "subject": "Ünïcödé", "date": "2026-11-20T14:03:00+01:00"},
]


def rendered(records: object, fmt: str, **kwargs: object) -> tuple[str, int]:
    out = io.StringIO()
    count = render(records, fmt, out, **kwargs)  # type: ignore[arg-type]
    return out.getvalue(), count


def test_registry_covers_every_format() -> None:
    assert FORMATS == ("table", "json", "ndjson", "csv")
    assert tuple(renderers._RENDERERS) == FORMATS


def test_unknown_format() -> None:
    with pytest.raises(UsageError) as excinfo:
        render([], "xml", io.StringIO())
    assert str(excinfo.value) == ("unknown output format 'xml': "
                                  "expected one of table, json, ndjson, csv")


# --- json -----------------------------------------------------------------------------------------


def test_json_exact() -> None:
    text, count = rendered(RECORDS, "json")
    assert count == 2
    assert text == """\
[
  {
    "number": 1,
    "size": 1234,
    "uid": "0001",
    "from": "Alice <alice@example.org>",
    "subject": "Hello",
    "date": null
  },
  {
    "number": 12,
    "size": 56789,
    "uid": "abc",
    "from": "bob@example.net",
    "subject": "Ünïcödé",
    "date": "2026-11-20T14:03:00+01:00"
  }
]
"""


def test_json_empty() -> None:
    assert rendered([], "json") == ("[]\n", 0)
    assert rendered(iter(()), "json", columns=["number"]) == ("[]\n", 0)


@given(st.lists(st.dictionaries(
    st.text(max_size=5),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text()
                 | st.floats(allow_nan=False, allow_infinity=False),
                 lambda inner: st.lists(inner, max_size=3), max_leaves=6),
    max_size=4), max_size=4))
def test_json_is_what_json_dumps_gives(records: list[dict[str, object]]) -> None:
    text, count = rendered(iter(records), "json")
    assert count == len(records)
    assert json.loads(text) == records
    if not any("\ud800" <= c <= "\udfff" for c in json.dumps(records, ensure_ascii=False)):
        assert text == json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    text.encode("utf-8")  # no lone surrogates: valid UTF-8


def test_json_columns_select_and_order() -> None:
    text, _ = rendered(RECORDS, "json", columns=["subject", "number", "missing"])
    assert json.loads(text) == [
        {"subject": "Hello", "number": 1, "missing": None},
        {"subject": "Ünïcödé", "number": 12, "missing": None},
    ]
    assert list(json.loads(text)[0]) == ["subject", "number", "missing"]


def test_json_bytes_and_surrogates_become_utf8_text() -> None:
    record = {"raw": b"caf\xc3\xa9 \xff", "text": "bad \udcff", "nested": [b"ok"]}
    text, _ = rendered([record], "json")
    assert json.loads(text) == [{"raw": "café \ufffd", "text": "bad \ufffd", "nested": ["ok"]}]
    text.encode("utf-8")


def test_json_keeps_long_text_and_escapes_controls() -> None:
    subject = "x" * 200 + "\x1b[2J"
    text, _ = rendered([{"subject": subject}], "json")
    assert "\\u001b[2J" in text
    assert json.loads(text) == [{"subject": subject}]


# --- ndjson ---------------------------------------------------------------------------------------


def test_ndjson_exact() -> None:
    text, count = rendered(RECORDS, "ndjson")
    assert count == 2
    assert text == (
        '{"number":1,"size":1234,"uid":"0001","from":"Alice <alice@example.org>",'
        '"subject":"Hello","date":null}\n'
        '{"number":12,"size":56789,"uid":"abc","from":"bob@example.net",'
        '"subject":"Ünïcödé","date":"2026-11-20T14:03:00+01:00"}\n'
    )


def test_ndjson_empty() -> None:
    assert rendered([], "ndjson") == ("", 0)


class FlushCountingIO(io.StringIO):
    """A stream that counts its flushes; a pipe or a file unless ``tty``."""

    def __init__(self, *, tty: bool = False) -> None:
        super().__init__()
        self.flushes = 0
        self.tty = tty

    def flush(self) -> None:
        self.flushes += 1
        super().flush()

    def isatty(self) -> bool:
        return self.tty


def test_ndjson_on_a_terminal_flushes_each_record_as_it_arrives() -> None:
    out = FlushCountingIO(tty=True)
    seen: list[tuple[str, int]] = []

    def records() -> Iterator[dict[str, object]]:
        for number in (1, 2, 3):
            yield {"number": number}
            # the generator resumes only after the renderer has written and flushed the record
            seen.append((out.getvalue(), out.flushes))

    assert render(records(), "ndjson", out) == 3
    assert seen == [
        ('{"number":1}\n', 1),
        ('{"number":1}\n{"number":2}\n', 2),
        ('{"number":1}\n{"number":2}\n{"number":3}\n', 3),
    ]


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """time.monotonic as the stream renderers see it: stands still until the test moves it."""
    now = [1000.0]
    monkeypatch.setattr(streams.time, "monotonic", lambda: now[0])
    return now


@pytest.mark.parametrize("fmt", ["ndjson", "json", "csv"])
def test_a_piped_stream_is_flushed_once_per_window_not_per_record(
        fmt: str, frozen_clock: list[float]) -> None:
    """Issue 13: into a pipe, one flush (a write call) per FLUSH_RECORDS records, at most half
    the session's pipelining window, so a consumer still sees each window's records as the next
    is read; then one at the end."""
    out = FlushCountingIO()
    flushes_seen: list[int] = []
    total = 5 * streams.FLUSH_RECORDS + 7

    def records() -> Iterator[dict[str, object]]:
        for number in range(1, total + 1):
            yield {"number": number}
            flushes_seen.append(out.flushes)

    assert render(records(), fmt, out) == total
    assert out.flushes == 5 + 1
    # each flush came right after the FLUSH_RECORDS-th record since the one before it
    assert [i + 1 for i in range(total) if flushes_seen[i] != (flushes_seen[i - 1] if i else 0)
            ] == [k * streams.FLUSH_RECORDS for k in range(1, 6)]
    assert streams.FLUSH_RECORDS <= MAX_IN_FLIGHT // 2


def test_a_piped_stream_flushes_a_record_that_comes_after_a_pause(
        frozen_clock: list[float]) -> None:
    """A filter that matches rarely: its record goes out at once when FLUSH_SECONDS have passed
    since the last flush, not after FLUSH_RECORDS more."""
    out = FlushCountingIO()
    flushes_seen: list[int] = []

    def records() -> Iterator[dict[str, object]]:
        yield {"number": 1}
        flushes_seen.append(out.flushes)
        frozen_clock[0] += streams.FLUSH_SECONDS
        yield {"number": 2}
        flushes_seen.append(out.flushes)

    render(records(), "ndjson", out)
    assert flushes_seen == [0, 1]  # record 1 waits (just after the start); record 2 goes out
    assert out.flushes == 2  # and once more at the end


def test_ndjson_output_survives_a_failing_source() -> None:
    out = io.StringIO()

    def records() -> Iterator[dict[str, object]]:
        yield {"number": 1}
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError):
        render(records(), "ndjson", out)
    assert out.getvalue() == '{"number":1}\n'


def test_json_and_csv_do_not_materialize_the_input() -> None:
    for fmt in ("json", "csv"):
        out = io.StringIO()
        lengths: list[int] = []

        def records() -> Iterator[dict[str, object]]:
            for number in (1, 2):
                yield {"number": number}
                lengths.append(len(out.getvalue()))  # noqa: B023 -- used within the loop

        render(records(), fmt, out)
        assert lengths[0] > 0 and lengths[1] > lengths[0], fmt


# --- csv ------------------------------------------------------------------------------------------


def test_csv_exact() -> None:
    records = [*RECORDS, {"number": 13, "size": 1, "uid": "x,y", "from": 'say "hi"',
                          "subject": "two\nlines", "date": None}]
    text, count = rendered(records, "csv")
    assert count == 3
    assert text == (
        "number,size,uid,from,subject,date\n"
        "1,1234,0001,Alice <alice@example.org>,Hello,\n"
        "12,56789,abc,bob@example.net,Ünïcödé,2026-11-20T14:03:00+01:00\n"
        '13,1,"x,y","say ""hi""","two\nlines",\n'
    )


def test_csv_value_rules() -> None:
    record = {"flags": ["a", "b", 3], "deleted": True, "kept": False, "none": None,
              "raw": b"\xc3\xa9\xff", "map": {"k": [1]}, "long": "y" * 100}
    text, _ = rendered([record], "csv")
    assert text == ("flags,deleted,kept,none,raw,map,long\n"
                    f'a b 3,true,false,,é\ufffd,"{{""k"":[1]}}",{"y" * 100}\n')


def test_csv_columns() -> None:
    text, _ = rendered(RECORDS, "csv", columns=["uid", "number", "missing"])
    assert text == "uid,number,missing\n0001,1,\nabc,12,\n"


def test_csv_empty() -> None:
    assert rendered([], "csv") == ("", 0)
    # with known columns a script still sees the schema
    assert rendered([], "csv", columns=["number", "size"]) == ("number,size\n", 0)


# --- table ----------------------------------------------------------------------------------------


def test_table_exact() -> None:
    text, count = rendered(RECORDS, "table")
    assert count == 2
    assert text == (
        "  number    size  uid    from                       subject    date\n"
        "--------  ------  -----  -------------------------  ---------  -------------------------\n"
        "       1    1234  0001   Alice <alice@example.org>  Hello\n"
        "      12   56789  abc    bob@example.net            Ünïcödé    2026-11-20T14:03:00+01:00\n"
    )


def test_table_truncates_long_text_and_shows_booleans_and_lists() -> None:
    records = [{"number": 1, "subject": "x" * 70, "deleted": True, "flags": ["a", "b"]},
               {"number": 2, "subject": None, "deleted": False, "flags": []}]
    text, _ = rendered(records, "table")
    assert text == (
        "  number  subject" + " " * 55 + "deleted    flags\n"
        "--------  " + "-" * 60 + "  ---------  -------\n"
        "       1  " + "x" * 59 + "…  yes        a b\n"
        "       2  " + " " * 60 + "  no\n"
    )
    assert MAX_CELL_WIDTH == 60


def test_table_keeps_numeric_looking_text_and_exact_sizes() -> None:
    records = [{"uid": "0001", "size": 10**15 + 1}, {"uid": "1e5", "size": 7}]
    text, _ = rendered(records, "table")
    assert text == (
        "uid" + " " * 16 + "size\n"
        "-----  ----------------\n"
        "0001   1000000000000001\n"
        "1e5                   7\n"
    )


def test_table_neutralizes_terminal_escapes() -> None:
    text, _ = rendered([{"uid": "a\x1b[2Jb\x9bc", "subject": "one\ntwo\tthree"}], "table")
    assert "\x1b" not in text and "\x9b" not in text
    assert "a\ufffd[2Jb\ufffdc" in text
    assert "one two three" in text


def test_table_union_of_keys_and_columns() -> None:
    text, _ = rendered([{"a": 1}, {"b": "x"}], "table")
    assert text == "  a  b\n---  ---\n  1\n     x\n"
    text, _ = rendered([{"a": 1, "b": "x"}], "table", columns=["b"])
    assert text == "b\n---\nx\n"


def test_table_empty_prints_nothing() -> None:
    assert rendered([], "table") == ("", 0)
    assert rendered(iter(()), "table", columns=["number"]) == ("", 0)


# --- single results -------------------------------------------------------------------------------

STAT = {"count": 2, "size": 58023, "implementation": None, "sasl": ["PLAIN", "SCRAM-SHA-256"]}


def test_render_one_json() -> None:
    out = io.StringIO()
    render_one(STAT, "json", out)
    assert out.getvalue() == """\
{
  "count": 2,
  "size": 58023,
  "implementation": null,
  "sasl": [
    "PLAIN",
    "SCRAM-SHA-256"
  ]
}
"""


def test_render_one_ndjson() -> None:
    out = io.StringIO()
    render_one(STAT, "ndjson", out)
    assert out.getvalue() == ('{"count":2,"size":58023,"implementation":null,'
                              '"sasl":["PLAIN","SCRAM-SHA-256"]}\n')


def test_render_one_csv() -> None:
    out = io.StringIO()
    render_one(STAT, "csv", out)
    assert out.getvalue() == "count,size,implementation,sasl\n2,58023,,PLAIN SCRAM-SHA-256\n"


def test_render_one_table() -> None:
    out = io.StringIO()
    render_one(STAT, "table", out)
    assert out.getvalue() == ("count           2\n"
                              "size            58023\n"
                              "implementation\n"
                              "sasl            PLAIN SCRAM-SHA-256\n")
    empty = io.StringIO()
    render_one({}, "table", empty)
    assert empty.getvalue() == ""


def test_render_one_unknown_format() -> None:
    with pytest.raises(UsageError, match="unknown output format 'yaml'"):
        render_one(STAT, "yaml", io.StringIO())


# --- human_size -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0"),
        (1023, "1023"),
        (1024, "1.0K"),
        (1536, "1.5K"),
        (10188, "9.9K"),
        (10189, "10K"),  # 9.95K rounds to 10: no "10.0K"
        (1048063, "1023K"),
        (1048064, "1.0M"),  # 1023.5K would round to 1024K: the next unit instead
        (int(4.2 * 1024**2), "4.2M"),
        (17 * 1024**2, "17M"),
        (2**63 - 1, "8.0E"),
    ],
)
def test_human_size(n: int, expected: str) -> None:
    assert human_size(n) == expected


def test_human_size_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        human_size(-1)


@pytest.mark.parametrize(("text", "columns"), [
    ("plain", 5), ("Jürgen Müller", 13), ("会议通知 250", 12), ("한국어 제목", 11),
    ("\uff26\uff55\uff4c\uff4c", 8), ("😀", 2), ("🎉 Party!", 9), ("👍🏽", 2), ("e\u0301", 1),
    ("a\u200bb", 2),
    ("\u1100\u1161", 2), ("soft\xadhyphen", 11), ("Привет", 6), ("שלום", 4),
])
def test_display_width_without_wcwidth(text: str, columns: int) -> None:
    from popctl.output.textwidth import wcswidth

    assert wcswidth(text) == columns


def test_wide_subjects_stay_in_line_without_wcwidth(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain `pip install` has tabulate without wcwidth: CJK and emoji must not shift rows."""
    import tabulate

    monkeypatch.setattr(tabulate, "wcwidth", None)
    monkeypatch.setattr(tabulate, "WIDE_CHARS_MODE", False)
    records = [{"number": 1, "subject": "会议通知", "date": "d1"},
               {"number": 22, "subject": "🎉 ok", "date": "d2"},
               {"number": 3, "subject": "plain", "date": "d3"}]
    out = io.StringIO()
    render(records, "table", out)
    assert out.getvalue() == (
        "  number  subject    date\n"
        "--------  ---------  ------\n"
        "       1  会议通知   d1\n"
        "      22  🎉 ok      d2\n"
        "       3  plain      d3\n")
