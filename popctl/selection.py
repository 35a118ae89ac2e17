"""Parsing what the user typed to choose messages: numbers and ranges, sizes, ages, regexes.

Every bad value raises UsageError with one line saying what is wrong and what is accepted.
"""

from __future__ import annotations

import re
import warnings
from bisect import bisect_left
from collections.abc import Sequence
from datetime import timedelta
from typing import NamedTuple

from popctl.errors import NoSuchMessageError, UsageError

__all__ = [
    "Last",
    "RangeSpec",
    "Single",
    "Span",
    "compile_regex",
    "overreach",
    "parse_duration",
    "parse_header_filter",
    "parse_ranges",
    "parse_size",
    "select",
]

# Longer digit strings are refused before int() sees them: nobody has 10**18 messages or needs a
# duration or size that long, and int() itself refuses strings over 4300 digits with ValueError.
_MAX_DIGITS = 18


# --- message numbers ------------------------------------------------------------------------------


class Single(NamedTuple):
    """One message number, e.g. ``3``. It must exist."""

    number: int

    def __str__(self) -> str:
        return str(self.number)


class Span(NamedTuple):
    """``first-last``, or ``first-`` (``last`` None) up to the highest number; clipped to the
    mailbox."""

    first: int
    last: int | None

    def __str__(self) -> str:
        return f"{self.first}-{self.last if self.last is not None else ''}"


class Last(NamedTuple):
    """``last:N``: the N highest-numbered messages (all of them if there are fewer)."""

    count: int  # type: ignore[assignment]  # shadows tuple.count(), unused here

    def __str__(self) -> str:
        return f"last:{self.count}"


RangeSpec = Single | Span | Last

_ACCEPTED = "expected N, N-M, N- or last:N, comma-separated (e.g. 1,3,5-7 or last:5)"
_RANGE = re.compile(r"([0-9]+)(?:(-)([0-9]*))?", re.ASCII)
_LAST = re.compile(r"last:([0-9]+)", re.ASCII | re.IGNORECASE)


def _number(digits: str, item: str) -> int:
    if len(digits) > _MAX_DIGITS:
        raise UsageError(f"invalid message selection {item!r}: number too large")
    number = int(digits)
    if number == 0:
        raise UsageError(f"invalid message selection {item!r}: message numbers start at 1")
    return number


def _parse_item(item: str, spec: str) -> RangeSpec:
    if not item:
        raise UsageError(f"invalid message selection {spec!r}: empty item; {_ACCEPTED}")
    if last := _LAST.fullmatch(item):
        if len(last[1]) > _MAX_DIGITS:
            raise UsageError(f"invalid message selection {item!r}: number too large")
        count = int(last[1])
        if count == 0:
            raise UsageError(f"invalid message selection {item!r}: last:N needs N of 1 or more")
        return Last(count)
    match = _RANGE.fullmatch(item)
    if match is None:
        if item.startswith("-") and item[1:].isdecimal():
            raise UsageError(f"invalid message selection {item!r}: message numbers start at 1")
        raise UsageError(f"invalid message selection {item!r}: {_ACCEPTED}")
    first = _number(match[1], item)
    if not match[2]:
        return Single(first)
    if not match[3]:
        return Span(first, None)
    last_number = _number(match[3], item)
    if last_number < first:
        raise UsageError(f"invalid message selection {item!r}: the range is backwards "
                         f"(write {last_number}-{first})")
    return Span(first, last_number)


def parse_ranges(specs: Sequence[str]) -> list[RangeSpec]:
    """Parse message selections: ``3``, ``3-7``, ``10-``, ``last:5`` and comma-separated lists of
    them (``1,3,5-7``). Blanks around items are ignored; ``last`` is case-insensitive."""
    if isinstance(specs, str):  # a lone str is a Sequence[str] too; "12" is not ["1", "2"]
        specs = [specs]
    return [_parse_item(item.strip(), spec) for spec in specs for item in spec.split(",")]


def _messages(count: int) -> str:
    if count == 0:
        return "the mailbox is empty"
    return f"the mailbox has {count} message{'s' if count != 1 else ''}"


def select(ranges: Sequence[RangeSpec], numbers: Sequence[int]) -> list[int]:
    """The distinct message numbers of the listing ``numbers`` (ascending) that ``ranges``
    select, in listing order.

    The work is linear in the listing and in the ranges, never in the range bounds: a LIST
    holding message 2**63 - 1 must not make ``1-`` count to it (issue 11). A range selects the
    listed messages within it and is clipped to the mailbox (``10-`` selects nothing in a
    mailbox of 5; overreach() says when a closed range reaches past it); ``last:N`` is the N
    last listed messages. A single number not in the listing raises NoSuchMessageError: the
    user named a message that is not there.
    """
    highest = numbers[-1] if numbers else 0
    spans: list[tuple[int, int]] = []
    for spec in ranges:
        match spec:
            case Single(number):
                if number > highest:
                    raise NoSuchMessageError(
                        f"message {number} does not exist ({_messages(highest)})")
                # A binary search, not a set of the listing: `retr 1` of a huge listing must
                # not copy it (issue 11).
                at = bisect_left(numbers, number)
                if at == len(numbers) or numbers[at] != number:
                    raise NoSuchMessageError(f"message {number} does not exist or is deleted")
                spans.append((number, number))
            case Span(first, last):
                spans.append((first, highest if last is None else min(last, highest)))
            case Last(n):
                if numbers:
                    spans.append((numbers[max(0, len(numbers) - n)], highest))
    spans = [span for span in spans if span[0] <= span[1]]
    if not spans:
        return []
    spans.sort()
    chosen: list[int] = []
    i = 0
    start = bisect_left(numbers, spans[0][0])
    for index in range(start, len(numbers)):  # both ascending: one merge-like walk
        number = numbers[index]
        while i < len(spans) and spans[i][1] < number:
            i += 1
        if i == len(spans):
            break
        if spans[i][0] <= number and (not chosen or chosen[-1] != number):
            chosen.append(number)
    return chosen


def overreach(ranges: Sequence[RangeSpec], highest: int) -> list[str]:
    """A warning for each closed range that reaches past the last message, ``highest``: the
    user named an end that is not there (``299-305`` of 300 messages selects 299-300). Open
    ranges (``10-``) and ``last:N`` mean "up to the end" and are never warned about."""
    where = f"the last message ({highest if highest else 'the mailbox is empty'})"
    notes = []
    for spec in ranges:
        if isinstance(spec, Span) and spec.last is not None and spec.last > highest:
            if spec.first > highest:
                notes.append(f"warning: range {spec} is past {where}: it selects nothing")
            else:
                part = str(highest) if spec.first == highest else f"{spec.first}-{highest}"
                notes.append(f"warning: range {spec} reaches past {where}; selected {part}")
    return notes


# --- sizes and durations --------------------------------------------------------------------------

_SIZE_UNITS: dict[str, int] = {"": 1, **{u: 1 << (10 * (i + 1)) for i, u in enumerate("kmgtpe")}}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([kmgtpe]?)(i?b)?", re.ASCII | re.IGNORECASE)
_SIZE_ACCEPTED = ("expected a number of bytes with an optional k, M, G or T suffix "
                  "(1024-based), e.g. 500, 500k, 1.5M, 2GB")
MAX_SIZE = 2**63 - 1


def parse_size(text: str) -> int:
    """A size in bytes from ``500``, ``500k``, ``1.5M``, ``2G``, ``10MB``, ``1.5MiB``.

    The suffixes k, M, G, T (and P, E) are powers of 1024, as in du, mpop and fetchmail,
    whether written ``M``, ``MB`` or ``MiB``, in any case; a bare ``B`` means bytes. A fraction
    is allowed with a suffix and rounded down to whole bytes (``1.1k`` is 1126). Negative sizes
    and sizes from 2**63 bytes up are refused.
    """
    stripped = text.strip()
    match = _SIZE.fullmatch(stripped)
    if match is None:
        if stripped.startswith("-") and _SIZE.fullmatch(stripped[1:]):
            raise UsageError(f"invalid size {text!r}: sizes cannot be negative")
        raise UsageError(f"invalid size {text!r}: {_SIZE_ACCEPTED}")
    number, unit, bytes_suffix = match.groups()
    if bytes_suffix and bytes_suffix.lower() == "ib" and not unit:
        raise UsageError(f"invalid size {text!r}: 'iB' needs a unit before it, as in 'MiB'")
    if len(number) > 2 * _MAX_DIGITS:
        raise UsageError(f"invalid size {text!r}: too large (the limit is 2**63 - 1 bytes)")
    # Exact decimal arithmetic in integers: the value is numerator / denominator.
    whole, _, fraction = number.partition(".")
    numerator = int(whole + fraction or "0") * _SIZE_UNITS[unit.lower()]
    denominator: int = 10 ** len(fraction)
    if not unit and numerator % denominator:
        raise UsageError(f"invalid size {text!r}: a size in bytes must be a whole number")
    if numerator > MAX_SIZE * denominator:
        raise UsageError(f"invalid size {text!r}: too large (the limit is 2**63 - 1 bytes)")
    return numerator // denominator  # rounded down to whole bytes


# Every unit by each name it may be written with (any case). A bare "m" is none of them: it read
# as minutes, so `--older-than 6m` meant six minutes to a user who meant six months (issue 16).
# Months and years have fixed lengths, as in systemd.time(7) and Prometheus, not calendar ones:
# 6mo is 180 days whatever today's date, and a fraction (1.5mo) means what it says.
_SECOND = timedelta(seconds=1)
_DURATION_UNITS: dict[str, timedelta] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), _SECOND),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), timedelta(minutes=1)),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), timedelta(hours=1)),
    **dict.fromkeys(("d", "day", "days"), timedelta(days=1)),
    **dict.fromkeys(("w", "week", "weeks"), timedelta(weeks=1)),
    **dict.fromkeys(("mo", "month", "months"), timedelta(days=30)),
    **dict.fromkeys(("y", "yr", "yrs", "year", "years"), timedelta(days=365)),
}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)\s*",
                            re.ASCII | re.IGNORECASE)
_DURATION_ACCEPTED = ("expected a number and a unit: s, min, h, d, w, mo (30 days) or y "
                      "(365 days), or several, e.g. 90min, 12h, 1.5d, 6mo, 1d12h")
_MICROSECONDS = {unit: value // timedelta(microseconds=1)
                 for unit, value in _DURATION_UNITS.items()}
_MAX_MICROSECONDS = timedelta.max // timedelta(microseconds=1)


def parse_duration(text: str) -> timedelta:
    """A length of time from ``30d``, ``12h``, ``90min``, ``45s``, ``1w``, ``6mo``, ``1y``, a
    decimal such as ``1.5d``, or a sum such as ``1d12h``; units may be spelt out (``6 months``)
    and are read in any case.

    ``mo`` is 30 days and ``y`` 365 days. A bare ``m`` is refused: say ``min`` or ``mo``. Each
    unit is used at most once; zero (``0d``) is allowed, negative values are not; a fraction
    is rounded down to whole microseconds.
    """
    stripped = text.strip()
    total = 0  # microseconds, exactly: no float rounding of 1.1d
    seen: set[timedelta] = set()
    position = 0
    while position < len(stripped) or position == 0:
        match = _DURATION_PART.match(stripped, position)
        if match is None:
            if position == 0 and stripped[:1] == "-" and _is_duration(stripped[1:]):
                raise UsageError(f"invalid duration {text!r}: durations cannot be negative")
            raise UsageError(f"invalid duration {text!r}: {_DURATION_ACCEPTED}")
        number, word = match.groups()
        unit = _DURATION_UNITS.get(word.lower())
        if unit is None:
            if word.lower() == "m":
                raise UsageError(f"invalid duration {text!r}: {word!r} is ambiguous: use "
                                 "'min' for minutes or 'mo' for months")
            if not word and match.end() == len(stripped):
                raise UsageError(f"invalid duration {text!r}: the number needs a unit; "
                                 f"{_DURATION_ACCEPTED}")
            raise UsageError(f"invalid duration {text!r}: {_DURATION_ACCEPTED}")
        if unit in seen:
            raise UsageError(f"invalid duration {text!r}: the unit {word!r} appears twice")
        seen.add(unit)
        if len(number) > 2 * _MAX_DIGITS:
            raise UsageError(f"invalid duration {text!r}: too long")
        whole, _, fraction = number.partition(".")
        total += int(whole + fraction or "0") * _MICROSECONDS[word.lower()] // 10 ** len(fraction)
        if total > _MAX_MICROSECONDS:
            raise UsageError(f"invalid duration {text!r}: too long")
        position = match.end()
    return timedelta(microseconds=total)


def _is_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except UsageError:
        return False
    return True


# --- regular expressions --------------------------------------------------------------------------

# RFC 5322 section 2.2: a field name is printable US-ASCII except the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+", re.ASCII)


def compile_regex(text: str, what: str) -> re.Pattern[str]:
    """Compile a user's regular expression for ``what`` (e.g. "--from"), case-insensitively."""
    try:
        # Warnings about future changes of meaning ("possible nested set") would be printed
        # mid-run, or fail under -W error; the pattern works today, so do not let them escape.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return re.compile(text, re.IGNORECASE)
    except (re.error, OverflowError, RecursionError) as e:
        raise UsageError(f"invalid regular expression {text!r} for {what}: {e}") from None


def parse_header_filter(text: str, label: str = "header filter") -> tuple[str, re.Pattern[str]]:
    """``'Name: REGEX'`` as (field name, pattern); the pattern is searched case-insensitively in
    each decoded value. An empty REGEX matches any value, so ``'X-Spam-Flag:'`` means the field
    is present. ``label`` names the filter in errors (the command line passes its option)."""
    name, colon, regex = text.partition(":")
    example = "expected 'Name: REGEX', e.g. 'X-Spam-Flag: yes'"
    if not colon:
        raise UsageError(f"invalid header filter {text!r}: no colon; {example}")
    name = name.strip()
    if not name:
        raise UsageError(f"invalid header filter {text!r}: the field name is empty; {example}")
    if not _FIELD_NAME.fullmatch(name):
        raise UsageError(f"invalid header filter {text!r}: {name!r} is not a header field name "
                         "(printable ASCII without spaces or colons)")
    return name, compile_regex(regex.lstrip(), f"{label} {name}")
