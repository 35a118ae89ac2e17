"""Which messages a command acts on: numbers, ranges, UIDs and filters, resolved in a session.

Size filters need only LIST; header filters (and the `list` view) fetch headers with pipelined
`TOP n 0`. Filters combine with AND.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from popctl import selection
from popctl.errors import CapabilityError, NoSuchMessageError, UsageError
from popctl.listing import SizeListing, UidListing
from popctl.models import Lookup, MessageSize, MessageUid, Progress

if TYPE_CHECKING:  # the cache and header parsing are imported only when headers are read
    from popctl.cache import HeaderCache
    from popctl.session import Session  # and the session layers only by the app that runs it

# The most message numbers looked up one by one (STAT, LIST n, UIDL n: a few dozen octets each)
# rather than with the whole listings (megabytes at 100,000 messages). A command line names a
# few; a script naming hundreds is still cheaper this way on any mailbox larger than it.
MAX_NAMED = 100


class Query:
    """What the user selected: numbers, ranges, UIDs, --all, size and header filters.

    Validated on creation (before connecting): a bad number or UID is refused before anything
    is sent. A plain class, not a dataclass: every command builds one, and defining a dataclass
    costs about a millisecond of start-up.
    """

    __slots__ = (
        "all",
        "header",
        "larger_than",
        "newer_than",
        "older_than",
        "ranges",
        "sender",
        "smaller_than",
        "subject",
        "uids",
    )

    def __init__(self, *, ranges: Sequence[str] = (), uids: Sequence[str] = (),
                 all: bool = False, larger_than: int | None = None,
                 smaller_than: int | None = None, sender: re.Pattern[str] | None = None,
                 subject: re.Pattern[str] | None = None,
                 header: Sequence[tuple[str, re.Pattern[str]]] = (),
                 older_than: timedelta | None = None, newer_than: timedelta | None = None
                 ) -> None:
        selection.parse_ranges(ranges)
        for uid in uids:
            # UIDs are matched locally, never sent; still, one with a line break is a mistake
            # (or an attempt at command injection), and the user should hear so at once.
            if not uid or any(c <= " " or c == "\x7f" for c in uid):
                raise UsageError(f"{uid!r} is not a UID (a UID has no spaces or control "
                                 "characters); nothing was done")
        self.ranges, self.uids, self.all = ranges, uids, all
        self.larger_than, self.smaller_than = larger_than, smaller_than
        self.sender, self.subject, self.header = sender, subject, header
        self.older_than, self.newer_than = older_than, newer_than

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Query({fields})"

    @property
    def explicit(self) -> bool:
        """Whether the user said which messages (as destructive commands require)."""
        return bool(self.ranges or self.uids or self.all or self.filters)

    @property
    def filters(self) -> bool:
        return self.larger_than is not None or self.smaller_than is not None or self.header_filters

    @property
    def header_filters(self) -> bool:
        return bool(self.sender or self.subject or self.header
                    or self.older_than is not None or self.newer_than is not None)


class Row:
    """One message of a listing; ``to_record`` gives its JSON form."""

    __slots__ = ("_headers", "date", "number", "sender", "sender_address", "sender_name", "size",
                 "subject", "uid")

    def __init__(self, number: int, size: int, uid: str | None = None) -> None:
        self.number, self.size, self.uid = number, size, uid
        self.sender: str | None = None
        self.subject: str | None = None
        self.date: str | None = None
        self.sender_name: str | None = None
        self.sender_address: str | None = None
        self._headers: bytes | None = None

    def __repr__(self) -> str:
        return (f"Row(number={self.number!r}, size={self.size!r}, uid={self.uid!r}, "
                f"sender={self.sender!r}, subject={self.subject!r}, date={self.date!r})")

    def to_record(self, with_headers: bool, extended: bool = False) -> dict[str, object]:
        """The record (docs/JSON.md): the keys ``fields`` names. ``extended`` (JSON and NDJSON)
        adds ``from_name``, ``from_address``, ``date_utc`` and ``date_epoch`` after the
        headers; CSV and the table keep 0.1's columns."""
        if not with_headers:
            return {"number": self.number, "size": self.size, "uid": self.uid}
        if not extended:
            return {"number": self.number, "size": self.size, "uid": self.uid,
                    "from": self.sender, "subject": self.subject, "date": self.date}
        utc, epoch = utc_forms(self.date)
        return {"number": self.number, "size": self.size, "uid": self.uid,
                "from": self.sender, "subject": self.subject, "date": self.date,
                "from_name": self.sender_name, "from_address": self.sender_address,
                "date_utc": utc, "date_epoch": epoch}

    @staticmethod
    def fields(with_headers: bool, extended: bool = False) -> list[str]:
        """The keys of ``to_record(with_headers, extended)``, in order, for a header row that is
        written even when no record comes (CSV)."""
        return list(EXTENDED_FIELDS if with_headers and extended
                    else HEADER_FIELDS if with_headers else _SIZE_FIELDS)


_SIZE_FIELDS = ("number", "size", "uid")
HEADER_FIELDS = (*_SIZE_FIELDS, "from", "subject", "date")
EXTENDED_FIELDS = (*HEADER_FIELDS, "from_name", "from_address", "date_utc", "date_epoch")


# utc_forms of the dates seen last: messages of one sending (a list, a batch, a scale test)
# share their Date, and a hit costs a tenth of the computation. Cleared when full, so bounded.
_UTC_SEEN: dict[str, tuple[str | None, int | None]] = {}
_UTC_SEEN_MAX = 1024


def utc_forms(iso: str | None) -> tuple[str | None, int | None]:
    """An ISO 8601 date with an offset (``Row.date``) in UTC as ``2026-12-05T20:30:00Z`` (the
    form jq 1.6's ``fromdateiso8601`` reads; it refuses offsets) and in seconds since the
    epoch; None for each that cannot be given (no date; a UTC time outside years 1-9999)."""
    if iso is None:
        return None, None
    forms = _UTC_SEEN.get(iso)
    if forms is None:
        if len(_UTC_SEEN) >= _UTC_SEEN_MAX:
            _UTC_SEEN.clear()
        forms = _UTC_SEEN[iso] = _utc_forms(iso)
    return forms


def _utc_forms(iso: str) -> tuple[str | None, int | None]:
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return None, None
    if when.tzinfo is None:  # Row.date always has an offset; say what one without means
        when = when.replace(tzinfo=UTC)
    epoch = int(when.timestamp())  # exact: the dates are whole seconds
    if iso.endswith("+00:00") and len(iso) == 25:  # already UTC: skip the costly isoformat
        return iso[:19] + "Z", epoch
    try:
        utc = (when - (when.utcoffset() or timedelta())).isoformat()[:19] + "Z"
    except OverflowError:  # 9999-12-31T23:00:00-05:00 is in year 10000 in UTC
        utc = None
    return utc, epoch


def _candidates(query: Query, sizes: Sequence[MessageSize],
                uids: Sequence[MessageUid] | None,
                warn: Callable[[str], None] | None = None
                ) -> tuple[Iterator[Row], Callable[[], int]]:
    """The rows the selection names, built one at a time as they are asked for, and a
    function counting them (for a progress bar) without building any.

    The selection is checked here, before the first row (an unknown or shared UID raises at
    once); the rows come later, lazily, so a listing never holds a Row per message.
    """
    # The listings stay compact (popctl/listing.py: in order, a few octets a message, looked up
    # by number without a dict of them all) and rows are built only for the messages chosen,
    # one at a time: a Row per message of a 64 MiB hostile listing took over a gigabyte for
    # `retr 1`, and rows kept until the end made a 100,000-message NDJSON listing hold every
    # sender and subject it had already written (issue 13).
    listing = sizes if isinstance(sizes, SizeListing) else SizeListing.of(sizes)
    uid_listing = uids if uids is None or isinstance(uids, UidListing) else UidListing.of(uids)
    chosen: set[int] | None = None
    if query.ranges:
        specs = selection.parse_ranges(query.ranges)
        # Over the listing, never over the ranges' bounds (issue 11): see selection.select.
        chosen = set(selection.select(specs, listing.numbers()))
        if warn is not None:
            for line in selection.overreach(specs, listing.last):
                warn(line)
    if query.uids:
        if uid_listing is None:
            raise UsageError("the server does not support UIDL, so messages cannot be chosen "
                             "by UID")
        wanted = set(query.uids)
        by_uid: dict[str, list[int]] = {}
        for number, uid in zip(uid_listing.numbers(), uid_listing.uids(), strict=True):
            if uid in wanted:
                by_uid.setdefault(uid, []).append(number)
        unknown = [u for u in query.uids if u not in by_uid]
        if unknown:
            raise NoSuchMessageError(f"no message has UID {unknown[0]!r}; nothing was done")
        # popa3d derives UIDs from a few headers, so identical copies share one: a UID naming
        # several messages must not pick one of them (dele --uid would delete a guess).
        shared = [u for u in query.uids if len(by_uid[u]) > 1]
        if shared:
            which = ", ".join(map(str, by_uid[shared[0]]))
            raise UsageError(f"UID {shared[0]!r} is shared by messages {which} on this "
                             "server, so it does not say which one; select by number; "
                             "nothing was done")
        chosen = (chosen or set()) | {by_uid[u][0] for u in query.uids}
    numbers = None if chosen is None else sorted(chosen)
    larger, smaller = query.larger_than, query.smaller_than

    def selected() -> Iterator[MessageSize]:
        if numbers is None and larger is None and smaller is None:
            return iter(listing)  # every message (a listing's entries are never None)
        entries: Iterable[MessageSize | None] = (
            listing if numbers is None else (listing.get(n) for n in numbers))
        return (m for m in entries if m is not None and (larger is None or m.size > larger)
                and (smaller is None or m.size < smaller))

    rows: Iterator[Row]
    if numbers is None and larger is None and smaller is None and (
            uid_listing is None or listing.same_numbers(uid_listing)):
        # Every message, and UIDL lists the ones LIST does (the usual case): the columns
        # walked side by side, without a look-up and a MessageSize per message.
        rows = map(Row, listing.numbers(), listing.sizes(), uid_listing.uids()) \
            if uid_listing is not None else map(Row, listing.numbers(), listing.sizes())
    else:
        rows = (Row(m.number, m.size, uid_listing.uid_of(m.number) if uid_listing else None)
                for m in selected())
    return rows, lambda: sum(1 for _ in selected())


def _cutoff(now: datetime, age: timedelta | None) -> datetime | None:
    """``now - age``, or the earliest datetime when that is before year 1 (``--older-than
    9999999d``: nothing is that old; ``--newer-than 9999999d``: everything dated is newer)."""
    if age is None:
        return None
    try:
        return now - age
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def matches(query: Query, row: Row, now: datetime) -> bool:
    """Whether a row already listed (with its headers) passes the query's size, From, Subject
    and age filters, as at ``now``: ``popctl browse`` filters its table as the user types with
    the filters of the command line. (Header filters need the raw block, which a listed row no
    longer holds: a query with them matches nothing.)"""
    if query.larger_than is not None and not row.size > query.larger_than:
        return False
    if query.smaller_than is not None and not row.size < query.smaller_than:
        return False
    return _matches(query, row, _cutoff(now, query.older_than),
                    _cutoff(now, query.newer_than))


def _matches(query: Query, row: Row, older: datetime | None, newer: datetime | None) -> bool:
    from popctl import headers as header_parsing

    if query.sender and not query.sender.search(row.sender or ""):
        return False
    if query.subject and not query.subject.search(row.subject or ""):
        return False
    for name, pattern in query.header:
        values = header_parsing.header_values(row._headers or b"", name)
        if not any(pattern.search(v) for v in values):
            return False
    if older is not None or newer is not None:
        if row.date is None:
            return False  # undated mail matches no age filter: never delete on a guess
        when = datetime.fromisoformat(row.date)
        if older is not None and not when < older:
            return False
        if newer is not None and not when > newer:
            return False
    return True


class Plan:
    """How a command reads the mailbox: the selection, and what is done with each message.

    One value built from the query where the command starts, instead of mode flags handed down
    from layer to layer; a combination that cannot work is refused when it is built.
    ``headers``: show From, Subject and Date (read with TOP); ``sizes_only``: one LIST, no UIDL
    unless the selection names UIDs; ``uids``: the UIDs are what is asked for (a server
    without UIDL is an error); ``delete``: mark each selected message deleted as it is read.
    """

    __slots__ = ("delete", "headers", "known", "query", "sizes_only", "uids")

    def __init__(self, query: Query, *, headers: bool = False, sizes_only: bool = False,
                 uids: bool = False, delete: bool = False,
                 known: Mapping[str, int] | None = None) -> None:
        if sizes_only and (headers or query.header_filters):
            raise ValueError("sizes_only=True reads no headers")
        if delete and query.header_filters:
            # The DELEs ride in the TOPs' window: the selection must be known before they are
            # answered.
            raise ValueError("delete=True needs a selection that does not depend on headers")
        self.query, self.headers, self.sizes_only = query, headers, sizes_only
        self.uids, self.delete = uids, delete
        # The message numbers the header cache last saw for the UIDs selected (a guess that
        # UIDL n checks); only when they alone are the selection, and nothing is deleted.
        self.known = dict(known) if known and query.uids and set(query.uids) <= set(known) \
            and not (query.ranges or query.all or query.filters or delete) else None

    def __repr__(self) -> str:
        return (f"Plan(query={self.query!r}, headers={self.headers!r}, "
                f"sizes_only={self.sizes_only!r}, uids={self.uids!r}, delete={self.delete!r})")

    @property
    def scan(self) -> bool:
        """Whether the listing needs UIDL beside LIST (both may then ride with the login)."""
        return not self.sizes_only or bool(self.query.uids)

    @property
    def named(self) -> tuple[int, ...] | None:
        """The message numbers the user named (``3``, ``3,7``), when they alone are the
        selection: looked up with LIST n (and UIDL n) instead of the whole listings. None
        when a range, ``last:N``, a UID, ``--all`` or a filter needs the listing."""
        query = self.query
        if not query.ranges or query.uids or query.all or query.filters:
            return None
        specs = selection.parse_ranges(query.ranges)
        if len(specs) > MAX_NAMED or not all(isinstance(s, selection.Single) for s in specs):
            return None
        return tuple(dict.fromkeys(s.number for s in specs if isinstance(s, selection.Single)))

    @property
    def lookup(self) -> Lookup | None:
        """What the login may send for the named messages (Session.login): their lookup,
        and, when they are read and deleted at once (dele N --yes), TOP n 0 and DELE n."""
        named = self.named
        if named is None and self.known is not None:
            return Lookup(tuple(sorted(set(self.known.values()))))
        if named is None:
            return None
        return Lookup(named, uids=self.scan, delete=self.delete and self.headers)

    @property
    def reads_headers(self) -> bool:
        """Whether headers are fetched: to show them, or to filter on them."""
        return self.headers or self.query.header_filters

    def without_headers(self) -> Plan:
        """The same plan showing no headers (for a server without TOP)."""
        return Plan(self.query, sizes_only=self.sizes_only, uids=self.uids, delete=self.delete,
                    known=self.known)


def run(session: Session, plan: Plan, *, progress: Progress | None = None,
        cache: HeaderCache | None = None, warn: Callable[[str], None] | None = None
        ) -> Iterator[Row]:
    """The selected messages, in order, each yielded as soon as it is known.

    Headers are fetched (pipelined) when the plan shows them or a header filter needs them,
    except those ``cache`` has (by UID and size); what is fetched is added to it, and the UIDs
    no longer on the server are pruned from it. Without UIDL nothing is cached.

    With ``plan.delete`` every selected message is also marked deleted, in the same pipelined
    window as the TOPs.

    ``warn`` is told (one line each) of closed ranges that reach past the last message.
    ``progress`` expects the selected messages (known once the listing came) and is told of
    each as it is done, read from the server or from the cache.
    """
    query, delete, named = plan.query, plan.delete, plan.named
    sizes: Sequence[MessageSize]
    uids: Sequence[MessageUid] | None
    guessed = _by_known_numbers(session, plan) if named is None else None
    if named is not None:
        sizes, uids = session.lookup(named, uids=plan.scan)
    elif guessed is not None:
        sizes, uids = guessed
        named = tuple(m.number for m in sizes)  # a partial listing, as for numbers named
    elif not plan.scan:
        sizes, uids = session.list(), None
    else:
        sizes, uids = session.scan()
    if plan.uids and uids is None and sizes:
        # The UIDs are what was asked for: blank ones would look like an answer.
        raise CapabilityError("the server does not support UIDL (no unique ids)",
                              command="UIDL")
    rows: Iterable[Row]
    rows, count = _candidates(query, sizes, uids, warn)
    del sizes  # the rows are made from the compact listing the generator holds
    if progress is not None:
        progress.expect(count())
    doomed: list[int] = []
    if delete:  # every DELE rides in the first window: the numbers are needed now
        rows = list(rows)
        doomed = [r.number for r in rows]
    if not plan.reads_headers:
        if doomed:
            session.dele(doomed)
        yield from rows
        return
    from popctl import headers as header_parsing

    now = datetime.now(UTC)
    older, newer = _cutoff(now, query.older_than), _cutoff(now, query.newer_than)
    shared: set[str] = set()
    if named is not None:
        # The UIDs of the named messages only: nothing to prune by, and a UID shared with a
        # message not looked up (popa3d) would go unseen, so the headers are read rather than
        # taken from the cache (and added to it: a listing finds shared UIDs and skips them).
        pass
    elif cache is not None and uids is not None:
        values = list(uids.uids()) if isinstance(uids, UidListing) else [u.uid for u in uids]
        cache.prune(values)
        # A UID several messages share keys none of them (popa3d derives UIDs from a few
        # header fields, so different messages can share one, even with the same size).
        shared = {uid for uid, n in Counter(values).items() if n > 1}
    else:
        cache = None
    # --header filters need the raw block, which is not cached: then every header is fetched.
    lookup = cache if not query.header else None
    # The rows read ahead of the replies, each with whether its headers are being fetched:
    # session.headers takes numbers from fetched_numbers() only as its window refills, so this
    # holds at most a window of rows (plus the cached ones between them), never the mailbox.
    ahead: deque[tuple[Row, bool]] = deque()

    def fetched_numbers() -> Iterator[int]:
        for row in rows:
            if cache is not None and row.uid is not None and row.uid not in shared:
                cache.note_number(row.uid, row.number)  # for a later --uid (Plan.known)
            fetch = lookup is None or row.uid in shared or not _from_cache(lookup, row)
            ahead.append((row, fetch))
            if fetch:
                yield row.number

    filtering = query.header_filters

    def kept(row: Row) -> bool:
        if progress is not None:
            progress(1)
        keep = not filtering or _matches(query, row, older, newer)
        row._headers = None
        return keep

    summarize = header_parsing.summarize
    fetched = session.headers(fetched_numbers(), delete=doomed)
    for got in fetched:
        row, fetch = ahead.popleft()
        while not fetch:  # cached: its place in the order has come
            if kept(row):
                yield row
            row, fetch = ahead.popleft()
        (row.sender, row.subject, row.date, _message_id, row.sender_name,
         row.sender_address) = summarize(got.data, message_id=False)
        if query.header:
            row._headers = got.data
        if cache is not None and row.uid is not None and row.uid not in shared:
            cache.put(row.uid, row.size, row.sender, row.subject, row.date,
                      row.sender_name, row.sender_address)
        del got
        # kept(row), written out: one call fewer per message read.
        if progress is not None:
            progress(1)
        keep = not filtering or _matches(query, row, older, newer)
        row._headers = None
        if keep:
            yield row
    while ahead:  # the cached rows after the last one fetched
        row = ahead.popleft()[0]
        if kept(row):
            yield row


def _by_known_numbers(session: Session, plan: Plan
                      ) -> tuple[Sequence[MessageSize], Sequence[MessageUid]] | None:
    """The sizes and UIDs of the messages the header cache says have the UIDs selected, if
    UIDL n confirms every one; None (then the whole listings are read) if any has moved."""
    if plan.known is None:
        return None
    try:
        sizes, uids = session.lookup(sorted(set(plan.known.values())))
    except NoSuchMessageError:  # deleted since: renumbered
        return None
    found = {u.number: u.uid for u in uids or ()}
    if any(found.get(n) != uid for uid, n in plan.known.items()):
        return None
    return sizes, uids or ()


def _from_cache(cache: HeaderCache, row: Row) -> bool:
    entry = cache.get(row.uid, row.size) if row.uid is not None else None
    if entry is None:
        return False
    _size, row.sender, row.subject, row.date, row.sender_name, row.sender_address = entry
    return True
