"""Hypothesis fuzzing of the protocol core and the session (see tests/support/fuzz_targets.py):
hostile bytes, split anywhere, after any sequence of commands or session calls. Only PopctlError
may come out; the unconsumed bytes stay bounded. scripts/fuzz_protocol.py runs the same targets
for much longer (atheris when installed)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from popctl.protocol import MAX_STATUS_LINE
from tests.support.fuzz_targets import COMMANDS, PIECES, run_protocol, run_session

server_bytes = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=64)),
                        max_size=60).map(b"".join)
splits = st.lists(st.integers(min_value=1, max_value=300), max_size=40)
FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(st.integers(0, len(COMMANDS) - 1), max_size=12), server_bytes, splits)
def test_protocol_survives_anything(commands: list[int], data: bytes, cuts: list[int]) -> None:
    outcome, peak = run_protocol(commands, data, cuts)
    assert outcome == "ok" or outcome.endswith("Error")
    assert peak <= MAX_STATUS_LINE + 300 + 64


@FUZZ
@given(st.lists(st.integers(0, len(COMMANDS) - 1), max_size=12), st.binary(max_size=2000),
       splits)
def test_protocol_survives_random_bytes(commands: list[int], data: bytes,
                                        cuts: list[int]) -> None:
    run_protocol(commands, data, cuts)


@FUZZ
@given(st.lists(st.integers(0, 40), max_size=8), server_bytes, splits)
def test_session_survives_anything(calls: list[int], data: bytes, cuts: list[int]) -> None:
    outcome, _ = run_session(calls, b"+OK ready\r\n" + data, cuts)
    assert outcome == "ok" or outcome.endswith("Error")


def test_an_endless_status_line_is_bounded() -> None:
    outcome, peak = run_protocol([], b"+OK " + b"x" * 100_000, [4096] * 30)
    assert outcome == "RemoteProtocolError" and peak <= MAX_STATUS_LINE + 4096


def test_an_endless_listing_is_bounded() -> None:
    data = (b"+OK\r\n+OK\r\n+OK\r\n+OK\r\nUSER\r\n.\r\n+OK\r\n+OK\r\n" + b"+OK\r\n"
            + b"1 100\r\n" * 10_000)
    outcome, _ = run_session([1], b"+OK ready\r\n" + data, [4096] * 100)
    assert outcome in ("RemoteProtocolError", "ConnectionClosedError")
