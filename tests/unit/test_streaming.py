"""A streamed listing holds only its pipelining window (issue 13): every row is let go once it
has been written, so memory does not grow with the mailbox. Checked by counting the rows alive
while the records are consumed, through the application layer against the sandbox server; no
clock is involved. The UTC forms of ``date`` (issue 16) against an independent oracle."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popctl.app import mailbox
from popctl.app.context import Options, Record, RunContext
from popctl.query import Query, Row, utc_forms
from popctl.sandbox import SandboxServer
from popctl.session import MAX_IN_FLIGHT
from tests.unit.test_app import FakeUI

# More than twice the window: a listing that kept its rows would hold them all by the end.
COUNT = 2 * MAX_IN_FLIGHT + 500
SAMPLE_EVERY = 250


def tiny(n: int) -> bytes:
    return (b"From: Sender %d <s%d@example.org>\r\nSubject: message %d\r\n"
            b"Date: Thu, 26 Nov 2026 10:00:00 +0100\r\n\r\nbody\r\n" % (n, n, n))


def live_rows() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Row)


class SamplingUI(FakeUI):
    """Consumes the records as a stream renderer does, keeping none, and counts the rows still
    alive every SAMPLE_EVERY records."""

    def __init__(self) -> None:
        super().__init__()
        self.alive: list[int] = []
        self.consumed = 0

    def emit(self, records: Iterable[Record], columns: Sequence[str] | None = None) -> int:
        for record in records:
            self.consumed += 1
            if self.consumed % SAMPLE_EVERY == 0:
                self.alive.append(live_rows())
            del record
        return self.consumed


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer([tiny(n) for n in range(1, COUNT + 1)]) as sandbox:
        yield sandbox


def listed(server: SandboxServer, monkeypatch: pytest.MonkeyPatch, fmt: str,
           **query: object) -> SamplingUI:
    monkeypatch.setenv("POPCTL_PASSWORD", "sandbox")
    options = Options(host="localhost", port=server.address[1], tls="starttls",
                      ca_file=server.ca_file, user="sandbox", format=fmt, no_cache=True)
    ui = SamplingUI()
    with contextlib.ExitStack() as resources:
        mailbox.list_messages(RunContext(options, ui, resources), Query(**query),  # type: ignore[arg-type]
                              sizes_only=False)
    return ui


@pytest.mark.parametrize("fmt", ["ndjson", "json", "csv"])
def test_a_streamed_listing_keeps_only_its_window(server: SandboxServer,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  fmt: str) -> None:
    before = live_rows()  # rows other tests of the run still hold, if any
    ui = listed(server, monkeypatch, fmt)
    assert ui.consumed == COUNT
    # At most the rows whose TOP is in flight (a window), wherever the listing is: rows already
    # written are gone, rows not yet asked for are not built. Before issue 13 every one of the
    # COUNT rows was alive from the first record on.
    assert len(ui.alive) == COUNT // SAMPLE_EVERY
    assert max(ui.alive) - before <= MAX_IN_FLIGHT + 1, (before, ui.alive)
    assert live_rows() == before


def test_a_filtered_listing_keeps_only_its_window(server: SandboxServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With a header filter the rows that do not match are let go as well."""
    import re

    before = live_rows()
    ui = listed(server, monkeypatch, "ndjson", subject=re.compile(r"[05]$"))
    assert ui.consumed == COUNT // 5
    assert ui.alive and max(ui.alive) - before <= MAX_IN_FLIGHT + 1, (before, ui.alive)


# --- date_utc and date_epoch (issue 16) ---------------------------------------------------------


@settings(max_examples=200)
@given(when=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       offset=st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59))
def test_utc_forms_agree_with_datetime(when: datetime, offset: int) -> None:
    dated = when.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=offset)))
    utc = dated.astimezone(UTC)
    iso = dated.isoformat()  # the form Row.date has ("+00:00" for UTC)
    assert utc_forms(iso) == (f"{utc.year:04}-{utc:%m-%dT%H:%M:%S}Z",
                              round((utc - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()))


@pytest.mark.parametrize(("iso", "expected"), [
    ("2026-12-05T21:30:00+01:00", ("2026-12-05T20:30:00Z", 1796502600)),
    ("2026-12-05T20:30:00+00:00", ("2026-12-05T20:30:00Z", 1796502600)),
    ("2026-01-01T00:30:00+01:00", ("2025-12-31T23:30:00Z", 1767223800)),
    ("1969-12-31T23:59:59+00:00", ("1969-12-31T23:59:59Z", -1)),
    # a UTC day outside years 1-9999 has no such text; its second is still known
    ("9999-12-31T23:00:00-05:00", (None, 253402315200)),
    (None, (None, None)),
    ("not a date", (None, None)),
])
def test_utc_forms(iso: str | None, expected: tuple[str | None, int | None]) -> None:
    assert utc_forms(iso) == expected


def test_utc_forms_remembers_a_bounded_number_of_dates() -> None:
    # Dates seen again come from memory (the same answer as computed), and a listing of more
    # distinct dates than it keeps does not make it grow past its bound.
    from popctl import query

    dates = [f"2026-12-05T{h:02}:{m:02}:00+01:00" for h in range(24) for m in range(60)]
    first = [utc_forms(d) for d in dates]
    assert len(query._UTC_SEEN) <= query._UTC_SEEN_MAX < len(dates)
    assert [utc_forms(d) for d in dates] == first == [query._utc_forms(d) for d in dates]
