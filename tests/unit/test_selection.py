from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from popctl.errors import NoSuchMessageError, ServerError, UsageError
from popctl.output import human_size
from popctl.selection import (
    Last,
    RangeSpec,
    Single,
    Span,
    compile_regex,
    overreach,
    parse_duration,
    parse_header_filter,
    parse_ranges,
    parse_size,
    select,
)

RANGES_ACCEPTED = "expected N, N-M, N- or last:N, comma-separated (e.g. 1,3,5-7 or last:5)"

# --- ranges ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["3"], [Single(3)]),
        (["3-7"], [Span(3, 7)]),
        (["3-3"], [Span(3, 3)]),
        (["10-"], [Span(10, None)]),
        (["last:5"], [Last(5)]),
        (["LAST:5"], [Last(5)]),
        (["1,3,5-7"], [Single(1), Single(3), Span(5, 7)]),
        (["1, 3 ,last:2"], [Single(1), Single(3), Last(2)]),
        (["2", "4-", "last:1"], [Single(2), Span(4, None), Last(1)]),
        (["007"], [Single(7)]),
        ([], []),
    ],
)
def test_parse_ranges(specs: list[str], expected: list[RangeSpec]) -> None:
    assert parse_ranges(specs) == expected


def test_a_lone_string_is_one_spec() -> None:
    assert parse_ranges("12") == [Single(12)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0", "invalid message selection '0': message numbers start at 1"),
        ("0-3", "invalid message selection '0-3': message numbers start at 1"),
        ("1-0", "invalid message selection '1-0': message numbers start at 1"),
        ("-3", "invalid message selection '-3': message numbers start at 1"),
        ("7-3", "invalid message selection '7-3': the range is backwards (write 3-7)"),
        ("last:0", "invalid message selection 'last:0': last:N needs N of 1 or more"),
        ("abc", f"invalid message selection 'abc': {RANGES_ACCEPTED}"),
        ("last:", f"invalid message selection 'last:': {RANGES_ACCEPTED}"),
        ("last:-2", f"invalid message selection 'last:-2': {RANGES_ACCEPTED}"),
        ("3--4", f"invalid message selection '3--4': {RANGES_ACCEPTED}"),
        ("+3", f"invalid message selection '+3': {RANGES_ACCEPTED}"),
        ("1.5", f"invalid message selection '1.5': {RANGES_ACCEPTED}"),
        ("\u0663", f"invalid message selection '\u0663': {RANGES_ACCEPTED}"),  # Arabic-Indic 3
        ("", f"invalid message selection '': empty item; {RANGES_ACCEPTED}"),
        ("1,,2", f"invalid message selection '1,,2': empty item; {RANGES_ACCEPTED}"),
        ("1,", f"invalid message selection '1,': empty item; {RANGES_ACCEPTED}"),
        ("9" * 19, f"invalid message selection '{'9' * 19}': number too large"),
        ("last:" + "9" * 19, f"invalid message selection 'last:{'9' * 19}': number too large"),
        ("1\x1b[2J", f"invalid message selection '1\\x1b[2J': {RANGES_ACCEPTED}"),
    ],
)
def test_parse_ranges_rejects(spec: str, message: str) -> None:
    with pytest.raises(UsageError) as excinfo:
        parse_ranges(["1", spec])
    assert str(excinfo.value) == message
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize(
    ("specs", "count", "expected"),
    [
        (["1,3,5-7"], 10, [1, 3, 5, 6, 7]),
        (["5-7", "6", "1-2", "2"], 10, [1, 2, 5, 6, 7]),  # sorted, no duplicates
        (["8-"], 10, [8, 9, 10]),
        (["8-20"], 10, [8, 9, 10]),  # clipped
        (["11-"], 10, []),
        (["10-"], 0, []),
        (["last:3"], 10, [8, 9, 10]),
        (["last:30"], 10, list(range(1, 11))),
        (["last:3"], 0, []),
        (["1", "last:1"], 1, [1]),
        (["10"], 10, [10]),
    ],
)
def test_select(specs: list[str], count: int, expected: list[int]) -> None:
    assert select(parse_ranges(specs), range(1, count + 1)) == expected


@pytest.mark.parametrize(
    ("specs", "count", "message"),
    [
        (["12"], 10, "message 12 does not exist (the mailbox has 10 messages)"),
        (["1-3,4"], 3, "message 4 does not exist (the mailbox has 3 messages)"),
        (["2"], 1, "message 2 does not exist (the mailbox has 1 message)"),
        (["1"], 0, "message 1 does not exist (the mailbox is empty)"),
    ],
)
def test_select_missing_single_number(specs: list[str], count: int, message: str) -> None:
    with pytest.raises(NoSuchMessageError) as excinfo:
        select(parse_ranges(specs), range(1, count + 1))
    assert str(excinfo.value) == message
    assert isinstance(excinfo.value, ServerError)


@pytest.mark.parametrize(
    ("specs", "numbers", "expected"),
    [
        # In the shell, after `dele 5`, LIST leaves 5 out: a range takes what is there.
        (["3-7"], [1, 2, 3, 4, 6, 7, 8], [3, 4, 6, 7]),
        (["last:3"], [1, 2, 3, 4, 6, 7, 8], [6, 7, 8]),  # the last three listed
        (["6-"], [1, 2, 3, 4, 6, 7, 8], [6, 7, 8]),
        (["1-"], [1, 2, 2**63 - 1], [1, 2, 2**63 - 1]),
        (["3-", "last:1"], [1, 2, 2**63 - 1], [2**63 - 1]),
        (["2-5"], [1, 2, 2**63 - 1], [2]),
    ],
)
def test_select_over_a_listing_with_gaps(specs: list[str], numbers: list[int],
                                         expected: list[int]) -> None:
    assert select(parse_ranges(specs), numbers) == expected


def test_a_single_deleted_number_is_refused() -> None:
    with pytest.raises(NoSuchMessageError) as excinfo:
        select(parse_ranges(["3-4,5"]), [1, 2, 3, 4, 6])
    assert str(excinfo.value) == "message 5 does not exist or is deleted"


def test_select_never_materialises_a_range() -> None:
    """Issue 11: a LIST holding message 2**63 - 1 made ``1-`` build range(1, 2**63). The walk
    is over the listing: a few hundred bytes, however high the numbers."""
    import tracemalloc

    listing = [1, 2, 3, 2**62, 2**63 - 1]
    tracemalloc.start()
    try:
        for specs in (["1-"], ["2-" + str(2**59)], ["last:4"], ["1-2", "3-"]):
            select(parse_ranges(specs), listing)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000, peak
    assert select(parse_ranges(["4-"]), listing) == [2**62, 2**63 - 1]


@pytest.mark.parametrize(
    ("specs", "highest", "expected"),
    [
        (["299-305"], 300, ["warning: range 299-305 reaches past the last message (300); "
                            "selected 299-300"]),
        (["300-305"], 300, ["warning: range 300-305 reaches past the last message (300); "
                            "selected 300"]),
        (["301-305"], 300, ["warning: range 301-305 is past the last message (300): it "
                            "selects nothing"]),
        (["1-3"], 0, ["warning: range 1-3 is past the last message (the mailbox is empty): "
                      "it selects nothing"]),
        (["1-300", "299-", "last:500", "400"], 300, []),  # in reach, open, last:N, a single
        (["1-2,5-9", "8-12"], 10, ["warning: range 8-12 reaches past the last message (10); "
                                   "selected 8-10"]),
    ],
)
def test_overreach(specs: list[str], highest: int, expected: list[str]) -> None:
    assert overreach(parse_ranges(specs), highest) == expected


range_specs = st.one_of(
    st.builds(Single, st.integers(1, 40)),
    st.builds(lambda a, n: Span(a, a + n), st.integers(1, 40), st.integers(0, 40)),
    st.builds(Span, st.integers(1, 40), st.none()),
    st.builds(Last, st.integers(1, 40)),
)


@given(st.lists(range_specs, min_size=1, max_size=6))
def test_specs_print_as_they_parse(specs: list[RangeSpec]) -> None:
    assert parse_ranges([",".join(map(str, specs))]) == specs


@given(st.lists(range_specs, max_size=6), st.sets(st.integers(1, 50)))
def test_select_matches_a_simple_model(specs: list[RangeSpec], listed: set[int]) -> None:
    """Any listing (gaps are deleted messages in the shell): the model tests each listed
    number against each spec, as the first implementation expanded every range."""
    numbers = sorted(listed)
    expected: set[int] = set()
    for position, n in enumerate(numbers):
        for spec in specs:
            match spec:
                case Single(number):
                    hit = n == number
                case Span(first, last):
                    hit = n >= first and (last is None or n <= last)
                case Last(k):
                    hit = position >= len(numbers) - k
            if hit:
                expected.add(n)
    if any(isinstance(s, Single) and s.number not in listed for s in specs):
        with pytest.raises(NoSuchMessageError):
            select(specs, numbers)
    else:
        assert select(specs, numbers) == sorted(expected)


# --- sizes ----------------------------------------------------------------------------------------

SIZE_ACCEPTED = ("expected a number of bytes with an optional k, M, G or T suffix (1024-based), "
                 "e.g. 500, 500k, 1.5M, 2GB")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("500", 500),
        ("500B", 500),
        ("500k", 500 * 1024),
        ("500K", 500 * 1024),
        ("500kb", 500 * 1024),
        ("500KiB", 500 * 1024),
        ("1.5M", 1536 * 1024),
        ("1.5MiB", 1536 * 1024),
        ("10MB", 10 * 1024**2),
        ("2G", 2 * 1024**3),
        ("2 GB", 2 * 1024**3),
        ("1T", 1024**4),
        ("1.1k", 1126),  # fractions of a byte are dropped
        (".5k", 512),
        ("  42  ", 42),
        ("9223372036854775807", 2**63 - 1),
        ("7E", 7 * 1024**6),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"invalid size '': {SIZE_ACCEPTED}"),
        ("abc", f"invalid size 'abc': {SIZE_ACCEPTED}"),
        ("10XB", f"invalid size '10XB': {SIZE_ACCEPTED}"),
        ("1e3", f"invalid size '1e3': {SIZE_ACCEPTED}"),
        ("k", f"invalid size 'k': {SIZE_ACCEPTED}"),
        ("1,5M", f"invalid size '1,5M': {SIZE_ACCEPTED}"),
        ("-5", "invalid size '-5': sizes cannot be negative"),
        ("-1.5M", "invalid size '-1.5M': sizes cannot be negative"),
        ("1.5", "invalid size '1.5': a size in bytes must be a whole number"),
        ("5iB", "invalid size '5iB': 'iB' needs a unit before it, as in 'MiB'"),
        ("9223372036854775808", "invalid size '9223372036854775808': too large "
                                "(the limit is 2**63 - 1 bytes)"),
        ("8E", "invalid size '8E': too large (the limit is 2**63 - 1 bytes)"),
        ("1" * 5000, f"invalid size '{'1' * 5000}': too large (the limit is 2**63 - 1 bytes)"),
    ],
)
def test_parse_size_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError) as excinfo:
        parse_size(text)
    assert str(excinfo.value) == message


@given(st.integers(0, 2**63 - 1))
def test_parse_size_reads_plain_numbers(n: int) -> None:
    assert parse_size(str(n)) == n


@given(st.integers(0, 2**32), st.sampled_from(["k", "K", "kB", "KiB", "M", "MB", "mib", "G"]))
def test_parse_size_units(n: int, suffix: str) -> None:
    factor = {"k": 1024, "m": 1024**2, "g": 1024**3}[suffix[0].lower()]
    assert parse_size(f"{n}{suffix}") == n * factor


# Up to 4 EiB: just below the 2**63 limit, human_size rounds up to "8.0E", which is 2**63.
@given(st.integers(0, 2**62))
def test_human_size_reads_back_approximately(n: int) -> None:
    back = parse_size(human_size(n))
    assert abs(back - n) <= n * 0.05


# --- durations ------------------------------------------------------------------------------------

DURATION_ACCEPTED = ("expected a number and a unit: s, min, h, d, w, mo (30 days) or y "
                     "(365 days), or several, e.g. 90min, 12h, 1.5d, 6mo, 1d12h")
AMBIGUOUS = "is ambiguous: use 'min' for minutes or 'mo' for months"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("2h", timedelta(hours=2)),
        ("15min", timedelta(minutes=15)),
        ("45s", timedelta(seconds=45)),
        ("1w", timedelta(weeks=1)),
        ("6mo", timedelta(days=180)),  # months are 30 days
        ("1y", timedelta(days=365)),  # years 365
        ("1d12h", timedelta(days=1, hours=12)),
        ("1d 12h", timedelta(days=1, hours=12)),
        ("12h1d", timedelta(days=1, hours=12)),
        ("1y2mo3w4d5h6min7s", timedelta(days=365 + 60 + 21 + 4, hours=5, minutes=6,
                                         seconds=7)),
        ("0s", timedelta(0)),
        ("0d", timedelta(0)),
        (" 90min ", timedelta(minutes=90)),
        # decimals, as sizes take them; exact, not float
        ("1.5d", timedelta(days=1, hours=12)),
        ("1.1d", timedelta(days=1, hours=2, minutes=24)),
        (".5h", timedelta(minutes=30)),
        ("2.d", timedelta(days=2)),
        ("0.000001s", timedelta(microseconds=1)),
        ("0.0000001s", timedelta(0)),  # rounded down to whole microseconds
        ("1.5mo", timedelta(days=45)),
        # any case (only m is ambiguous), spelt out, singular or plural
        ("30D", timedelta(days=30)),
        ("6MO", timedelta(days=180)),
        ("1Y", timedelta(days=365)),
        ("90MIN", timedelta(minutes=90)),
        ("6 months", timedelta(days=180)),
        ("1 month", timedelta(days=30)),
        ("2 weeks 3 days", timedelta(days=17)),
        ("1 year", timedelta(days=365)),
        ("10 minutes", timedelta(minutes=10)),
        ("5 mins 30 secs", timedelta(minutes=5, seconds=30)),
        ("2 hours", timedelta(hours=2)),
        ("1hr", timedelta(hours=1)),
        ("3yrs", timedelta(days=3 * 365)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"invalid duration '': {DURATION_ACCEPTED}"),
        ("soon", f"invalid duration 'soon': {DURATION_ACCEPTED}"),
        ("d", f"invalid duration 'd': {DURATION_ACCEPTED}"),
        ("5x", f"invalid duration '5x': {DURATION_ACCEPTED}"),
        ("1e3d", f"invalid duration '1e3d': {DURATION_ACCEPTED}"),
        ("1.5.5d", f"invalid duration '1.5.5d': {DURATION_ACCEPTED}"),
        ("1,5d", f"invalid duration '1,5d': {DURATION_ACCEPTED}"),
        ("5ms", f"invalid duration '5ms': {DURATION_ACCEPTED}"),
        ("\u0663d", f"invalid duration '\u0663d': {DURATION_ACCEPTED}"),  # Arabic-Indic 3
        ("30", f"invalid duration '30': the number needs a unit; {DURATION_ACCEPTED}"),
        ("0", f"invalid duration '0': the number needs a unit; {DURATION_ACCEPTED}"),
        ("1.5", f"invalid duration '1.5': the number needs a unit; {DURATION_ACCEPTED}"),
        ("1d30", f"invalid duration '1d30': the number needs a unit; {DURATION_ACCEPTED}"),
        ("-1d", "invalid duration '-1d': durations cannot be negative"),
        ("-1.5mo", "invalid duration '-1.5mo': durations cannot be negative"),
        # m was minutes; read as months by people writing a retention period (issue 16)
        ("6m", f"invalid duration '6m': 'm' {AMBIGUOUS}"),
        ("6M", f"invalid duration '6M': 'M' {AMBIGUOUS}"),
        ("1.5m", f"invalid duration '1.5m': 'm' {AMBIGUOUS}"),
        ("1d6m", f"invalid duration '1d6m': 'm' {AMBIGUOUS}"),
        ("6 m", f"invalid duration '6 m': 'm' {AMBIGUOUS}"),
        ("1d2d", "invalid duration '1d2d': the unit 'd' appears twice"),
        ("1d2days", "invalid duration '1d2days': the unit 'days' appears twice"),
        ("1min30minutes", "invalid duration '1min30minutes': the unit 'minutes' appears twice"),
        ("99999999999w", "invalid duration '99999999999w': too long"),
        ("2800000y", "invalid duration '2800000y': too long"),
        ("9" * 40 + "s", f"invalid duration '{'9' * 40}s': too long"),
        ("0." + "0" * 40 + "1s", f"invalid duration '0.{'0' * 40}1s': too long"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError) as excinfo:
        parse_duration(text)
    assert str(excinfo.value) == message


@given(st.from_regex(r"\A([0-9]{1,12}(\.[0-9]{0,6})?|\.[0-9]{1,6}) ?(s|min|h|d|w|mo|y)\Z"))
def test_parse_duration_is_exact_decimal_arithmetic(text: str) -> None:
    """A Fraction reference: the same microseconds (rounded down), or "too long"."""
    from fractions import Fraction

    match = re.fullmatch(r"([0-9.]+) ?([a-z]+)", text)
    assert match is not None
    number, unit = match.groups()
    seconds = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 30 * 86400,
               "y": 365 * 86400}[unit]
    microseconds = int(Fraction(number) * seconds * 10**6)
    if microseconds > timedelta.max // timedelta(microseconds=1):
        with pytest.raises(UsageError, match="too long"):
            parse_duration(text)
    else:
        assert parse_duration(text) == timedelta(microseconds=microseconds)


# --- regular expressions --------------------------------------------------------------------------


def test_compile_regex_is_case_insensitive() -> None:
    pattern = compile_regex("^alice@", "--from")
    assert pattern.search("ALICE@example.org")
    assert pattern.flags & re.IGNORECASE


def test_compile_regex_rejects() -> None:
    with pytest.raises(UsageError) as excinfo:
        compile_regex("a(b", "--subject")
    assert str(excinfo.value) == ("invalid regular expression 'a(b' for --subject: "
                                  "missing ), unterminated subpattern at position 1")


def test_compile_regex_overflow_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="for --from: "):
        compile_regex("a{99999999999}", "--from")


def test_compile_regex_hides_future_warnings() -> None:
    # "[[" draws a FutureWarning (possible nested set), an error under -W error.
    assert compile_regex("[[a]", "--from").search("[")


@pytest.mark.parametrize(
    ("text", "name", "matches", "misses"),
    [
        ("X-Spam-Flag: yes", "X-Spam-Flag", "YES", "no"),
        ("X-Spam-Flag:yes", "X-Spam-Flag", "yes", "no"),
        ("List-Id: <dev\\.example\\.org>", "List-Id", "Dev <DEV.example.org>", "devXexample.org"),
        ("X-Mailer: a:b", "X-Mailer", "a:b", "ab"),  # only the first colon separates
        ("X-Present:", "X-Present", "anything", None),  # empty: any value matches
        (" Subject : hi", "Subject", "hi", "ho"),
    ],
)
def test_parse_header_filter(text: str, name: str, matches: str, misses: str | None) -> None:
    got_name, pattern = parse_header_filter(text)
    assert got_name == name
    assert pattern.search(matches)
    if misses is not None:
        assert not pattern.search(misses)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("X-Spam-Flag yes", "invalid header filter 'X-Spam-Flag yes': no colon; "
                            "expected 'Name: REGEX', e.g. 'X-Spam-Flag: yes'"),
        (": yes", "invalid header filter ': yes': the field name is empty; "
                  "expected 'Name: REGEX', e.g. 'X-Spam-Flag: yes'"),
        ("X Spam: yes", "invalid header filter 'X Spam: yes': 'X Spam' is not a header field "
                        "name (printable ASCII without spaces or colons)"),
        ("Sujet\u00e9: x", "invalid header filter 'Sujet\u00e9: x': 'Sujet\u00e9' is not a "
                           "header field name (printable ASCII without spaces or colons)"),
        ("Subject: (unclosed", "invalid regular expression '(unclosed' for header filter Subject: "
                               "missing ), unterminated subpattern at position 0"),
    ],
)
def test_parse_header_filter_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError) as excinfo:
        parse_header_filter(text)
    assert str(excinfo.value) == message


@given(st.from_regex(r"\A([0-9]{1,22}(\.[0-9]{0,6})?|\.[0-9]{1,6}) ?([kKmMgGtTpPeE]?)\Z"))
def test_parse_size_is_exact_decimal_arithmetic(text: str) -> None:
    """parse_size computes in integers; a Fraction reference gives the same bytes or refusal."""
    from fractions import Fraction

    match = re.fullmatch(r"([0-9.]+) ?([a-zA-Z]?)", text)
    assert match is not None
    number, unit = match.groups()
    multiplier = 1024 ** ("kmgtpe".index(unit.lower()) + 1) if unit else 1
    value = Fraction(number) * multiplier
    if (not unit and value.denominator != 1) or value > 2**63 - 1:
        with pytest.raises(UsageError):
            parse_size(text)
    else:
        assert parse_size(text) == int(value)
