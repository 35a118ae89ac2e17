"""Scan listings (LIST and UIDL without an argument): parsed as they arrive, checked, kept compact.

A mailbox's listing is kept in arrays, a few octets per message, rather than as a list of
NamedTuples of ints and strings (about 300 octets per message, which let a hostile 64 MiB LIST and
UIDL take 2.4 GB); entries are built one at a time when asked for. The listing is checked as it
arrives: message numbers rise strictly and stay below MAX_MESSAGE_NUMBER, sizes below
MAX_MESSAGE_OCTETS, lines are at most MAX_LISTING_LINE long; once complete, its highest number
must be one its length can justify (``highest_allowed``). Anything else is the server breaking
the protocol (RemoteProtocolError), reported before popctl acts on the listing.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate
from operator import lt
from typing import Final, TypeVar, overload

from popctl.errors import RemoteProtocolError
from popctl.models import MessageSize, MessageUid

# Message numbers index the maildrop as the session opened it. Servers keep them in 32-bit
# integers (Dovecot's are unsigned int) and no maildrop holds two thousand million messages: a
# larger number is a broken or hostile server (9223372036854775807 once made `uidl 1-` grow
# to 8.8 GB). Checked on every line as it arrives.
MAX_MESSAGE_NUMBER: Final = 2**31 - 1

# RFC 1939 numbers a session's messages 1 to N, and LIST and UIDL leave out only those deleted
# in the session (Dovecot 2.3 even renumbers the messages its pop3_deleted_flag hides: checked,
# hidden messages leave no gap). A server that leaves out messages that vanished under it may
# leave a few more gaps, so a listing of L messages after D deletions may number up to
# 2 (L + D) + NUMBER_SLACK: generous, and it keeps all work on numbers in proportion to the
# listing (`retr 2-` expands no range beyond it). Checked once the listing is complete.
NUMBER_SLACK: Final = 100


def highest_allowed(listed: int, deleted: int) -> int:
    """The highest message number a listing of ``listed`` messages may hold after ``deleted``
    deletions in the session."""
    return 2 * (listed + deleted) + NUMBER_SLACK

# No mail system stores a message of a terabyte (Postfix's default limit is 10 MB, Gmail's
# 50 MB): a larger LIST size is nonsense that would only mislead --larger-than and progress bars.
MAX_MESSAGE_OCTETS: Final = 2**40

# RFC 1939 limits a UID to 70 characters and a LIST line to a number and a size (anything after
# them is allowed, but no server sends any). 8 KiB, like a status line, bounds the partial line
# kept between reads.
MAX_LISTING_LINE: Final = 8192

# The common forms, for a whole read at once: "N SIZE" and "N UID" (RFC 1939 UIDs are 0x21-0x7E).
# A read in which any line differs goes line by line, through the checks that name the problem.
_LIST_LINES = re.compile(rb"^([0-9]{1,10}) ([0-9]{1,19})\r?$", re.MULTILINE)
_UIDL_LINES = re.compile(rb"^([0-9]{1,10}) ([!-~]{1,1000})\r?$", re.MULTILINE)

T = TypeVar("T", MessageSize, MessageUid)


def parse_int(text: str, what: str) -> int:
    """A number the server sent: decimal digits, below 2**63."""
    if not text.isdigit() or len(text) > 19 or int(text) > 2**63 - 1:
        raise RemoteProtocolError(f"server sent {what} {text[:30]!r}, not a number")
    return int(text)


def parse_pair(line: str, what: str) -> tuple[int, str]:
    """"N WORD ..." -> (N, WORD) of a listing line, or RemoteProtocolError naming the problem."""
    words = line.split()
    if len(words) < 2:
        raise RemoteProtocolError(f"malformed {what} line from the server: {line[:80]!r}")
    return parse_int(words[0], f"{what} message number"), words[1]


def parse_size(line: str) -> MessageSize:
    """One scan listing ("N SIZE"), from LIST without an argument or LIST n."""
    number, size = parse_pair(line, "LIST")
    return MessageSize(check_number(number, "LIST"), check_size(parse_int(size, "LIST size"),
                                                                number))


def check_number(number: int, what: str) -> int:
    if number < 1:
        raise RemoteProtocolError(
            f"server sent {what} message number {number} (message numbers start at 1)")
    if number > MAX_MESSAGE_NUMBER:
        raise RemoteProtocolError(
            f"server sent {what} message number {number}, more messages than any mailbox "
            f"holds (the limit is {MAX_MESSAGE_NUMBER})")
    return number


def check_size(size: int, number: int) -> int:
    if size > MAX_MESSAGE_OCTETS:
        raise RemoteProtocolError(
            f"server sent LIST size {size} for message {number}: more than any message can "
            f"be (the limit is {MAX_MESSAGE_OCTETS} octets)")
    return size


def _append(values: array[int], more: Sequence[int]) -> array[int]:
    """``values`` extended by ``more``, widened to 64 bits when they do not fit in 32."""
    length = len(values)
    try:
        values.extend(more)
    except OverflowError:  # extend() kept the items before the one that did not fit
        del values[length:]
        values = array("q", values)
        values.extend(more)
    return values


class _Listing(Sequence[T]):
    """Message numbers in strictly increasing order, kept implicitly while they are 1, 2, 3 ...
    (the usual case: only deletions and hidden messages leave gaps)."""

    what = ""

    def __init__(self) -> None:
        self._count = 0
        self._numbers: array[int] | None = None  # None while they are 1..count

    def __len__(self) -> int:
        return self._count

    @property
    def last(self) -> int:
        """The highest message number, 0 for an empty listing."""
        if not self._count:
            return 0
        return self._count if self._numbers is None else self._numbers[-1]

    def numbers(self) -> Sequence[int]:
        """The message numbers, in increasing order."""
        return range(1, self._count + 1) if self._numbers is None else self._numbers

    def same_numbers(self, other: _Listing[MessageSize] | _Listing[MessageUid]) -> bool:
        """Whether ``other`` lists exactly the message numbers this one does: at once while
        both run 1, 2, 3 ... (a listing is kept implicit until its first gap, so one with a gap
        never equals one without)."""
        if self._count != other._count:
            return False
        if self._numbers is None or other._numbers is None:
            return self._numbers is None and other._numbers is None
        return self._numbers == other._numbers

    def number_at(self, index: int) -> int:
        return index + 1 if self._numbers is None else self._numbers[index]

    def index_of(self, number: int) -> int:
        """Where message ``number`` is in the listing, or -1."""
        if self._numbers is None:
            return number - 1 if 1 <= number <= self._count else -1
        at = bisect_left(self._numbers, number)
        return at if at < self._count and self._numbers[at] == number else -1

    def _add_numbers(self, numbers: Sequence[int]) -> None:
        """Record the numbers of one read; RemoteProtocolError unless they keep rising."""
        if not numbers:
            return
        last = self.last
        first = numbers[0]
        if first < 1:
            check_number(first, self.what)
        if first <= last or not all(map(lt, numbers, numbers[1:])):
            previous = [last, *numbers]
            at = next(i for i in range(1, len(previous)) if previous[i] <= previous[i - 1])
            raise self._order_error(previous[at], previous[at - 1])
        highest = numbers[-1]
        if highest > MAX_MESSAGE_NUMBER:
            check_number(highest, self.what)
        if self._numbers is None:
            if first == self._count + 1 and highest == self._count + len(numbers):
                self._count += len(numbers)
                return
            self._numbers = array("I", range(1, self._count + 1))
        self._numbers.extend(numbers)
        self._count += len(numbers)

    def _text(self, raw: bytes) -> str:
        """One line that the fast path did not take, as text to parse (the fast path's lines
        are short by construction)."""
        if len(raw) > MAX_LISTING_LINE:
            raise RemoteProtocolError(
                f"server sent a {self.what} line longer than {MAX_LISTING_LINE} octets")
        return raw.decode("utf-8", "replace").strip()

    def _order_error(self, number: int, previous: int) -> RemoteProtocolError:
        if number == previous:
            return RemoteProtocolError(
                f"server listed message {number} twice in its {self.what} reply")
        return RemoteProtocolError(
            f"server listed message {number} after message {previous} in its {self.what} "
            "reply (a listing is in increasing order)")

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self._entry(i) for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("listing index out of range")
        return self._entry(index)

    def __iter__(self) -> Iterator[T]:
        for index in range(self._count):
            yield self._entry(index)

    def _entry(self, index: int) -> T:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same entries (a list of MessageSize, say)."""
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(repr(entry) for entry in self[:3])
        more = f", ... {self._count - 3} more" if self._count > 3 else ""
        return f"{type(self).__name__}([{shown}{more}])"


class SizeListing(_Listing[MessageSize]):
    """LIST's answer: each message's number and size (8 octets a message, 4 while sizes and
    numbers fit 32 bits and the numbers run 1, 2, 3 ...)."""

    what = "LIST"

    def __init__(self) -> None:
        super().__init__()
        self._sizes: array[int] = array("I")

    @classmethod
    def of(cls, entries: Iterable[MessageSize]) -> SizeListing:
        """A listing holding ``entries`` (in any order; each number once)."""
        listing = cls()
        for entry in sorted(entries, key=lambda e: e.number):
            listing._add_numbers([check_number(entry.number, "LIST")])
            listing._sizes = _append(listing._sizes, [entry.size])
        return listing

    def _entry(self, index: int) -> MessageSize:
        return MessageSize(self.number_at(index), self._sizes[index])

    def sizes(self) -> Sequence[int]:
        """The sizes, in the listing's order."""
        return self._sizes

    def get(self, number: int) -> MessageSize | None:
        index = self.index_of(number)
        return None if index < 0 else MessageSize(number, self._sizes[index])

    def add_lines(self, data: bytes | bytearray) -> None:
        """Complete lines (each ending in LF) of the reply."""
        pairs = _LIST_LINES.findall(data)
        if len(pairs) != data.count(b"\n"):
            for line in bytes(data).split(b"\n")[:-1]:
                self.add_line(line)
            return
        sizes = [int(s) for _, s in pairs]
        if sizes and max(sizes) > MAX_MESSAGE_OCTETS:  # the line-by-line checks say why
            for line in bytes(data).split(b"\n")[:-1]:
                self.add_line(line)
            return
        self._add_numbers([int(n) for n, _ in pairs])
        self._sizes = _append(self._sizes, sizes)

    def add_line(self, raw: bytes) -> None:
        line = self._text(raw)
        if line:
            entry = parse_size(line)
            self._add_numbers([entry.number])
            self._sizes = _append(self._sizes, [entry.size])


class UidListing(_Listing[MessageUid]):
    """UIDL's answer: the UIDs end to end in one buffer, with where each ends (about the UID's
    length plus 4 octets a message)."""

    what = "UIDL"

    def __init__(self) -> None:
        super().__init__()
        self._blob = bytearray()
        self._ends: array[int] = array("I")

    @classmethod
    def of(cls, entries: Iterable[MessageUid]) -> UidListing:
        """A listing holding ``entries`` (in any order; each number once)."""
        listing = cls()
        for entry in sorted(entries, key=lambda e: e.number):
            listing._add_numbers([check_number(entry.number, "UIDL")])
            listing._blob += entry.uid.encode("utf-8")
            listing._ends = _append(listing._ends, [len(listing._blob)])
        return listing

    def _uid(self, index: int) -> str:
        start = self._ends[index - 1] if index else 0
        return self._blob[start:self._ends[index]].decode("utf-8", "replace")

    def _entry(self, index: int) -> MessageUid:
        return MessageUid(self.number_at(index), self._uid(index))

    def uid_of(self, number: int) -> str | None:
        index = self.index_of(number)
        return None if index < 0 else self._uid(index)

    def uids(self) -> Iterator[str]:
        """Every UID, in the listing's order."""
        blob, start = self._blob, 0
        for end in self._ends:  # _uid(index) for each, without a call and a look-up each
            yield blob[start:end].decode("utf-8", "replace")
            start = end

    def add_lines(self, data: bytes | bytearray) -> None:
        """Complete lines (each ending in LF) of the reply."""
        pairs = _UIDL_LINES.findall(data)
        if len(pairs) != data.count(b"\n"):
            for line in bytes(data).split(b"\n")[:-1]:
                self.add_line(line)
            return
        self._add_numbers([int(n) for n, _ in pairs])
        uids = [u for _, u in pairs]
        self._ends = _append(self._ends, list(accumulate(map(len, uids),
                                                         initial=len(self._blob)))[1:])
        self._blob += b"".join(uids)

    def add_line(self, raw: bytes) -> None:
        line = self._text(raw)
        if line:
            number, uid = parse_pair(line, "UIDL")
            self._add_numbers([check_number(number, "UIDL")])
            self._blob += uid.encode("utf-8")
            self._ends = _append(self._ends, [len(self._blob)])


Listing = SizeListing | UidListing


class ListingSink:
    """A sink for a LIST or UIDL reply: parses each read's complete lines into ``listing``.

    More than ``limit`` octets in all, or a line longer than MAX_LISTING_LINE, is a protocol
    error raised at once: nothing unbounded is kept while the reply is still arriving.
    """

    def __init__(self, listing: Listing, limit: int) -> None:
        self.listing = listing
        self._limit = limit
        self._seen = 0
        self._partial = bytearray()

    def write(self, data: bytes) -> None:
        self._seen += len(data)
        if self._seen > self._limit:
            raise RemoteProtocolError(
                f"{self.listing.what} reply larger than {self._limit} octets")
        end = data.rfind(b"\n") + 1
        if end:
            if self._partial:
                self._partial += data[:end]
                self.listing.add_lines(self._partial)
                self._partial.clear()
            else:
                self.listing.add_lines(data if end == len(data) else data[:end])
        self._partial += data[end:]
        if len(self._partial) > MAX_LISTING_LINE:
            raise RemoteProtocolError(f"server sent a {self.listing.what} line longer than "
                                      f"{MAX_LISTING_LINE} octets")

    def finish(self) -> Listing:
        """The listing, once the reply has ended."""
        if self._partial:
            self.listing.add_line(bytes(self._partial))
            self._partial.clear()
        return self.listing
