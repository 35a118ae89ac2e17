#!/usr/bin/env python3
"""The long fuzz run of popctl's protocol core and session (tests/support/fuzz_targets.py).

With atheris installed (pip install atheris) it is coverage-guided for --seconds; otherwise
Hypothesis runs --examples examples per target. Either way it prints the figures that
docs/RELIABILITY.md reports: inputs run, how each ended, the peak of unconsumed bytes, and how
many escaped as something other than a PopctlError (must be 0; atheris stops at the first).

    python3 scripts/fuzz_protocol.py --seconds 300
    python3 scripts/fuzz_protocol.py --hypothesis --examples 20000
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

outcomes: collections.Counter[str] = collections.Counter()
peaks = {"protocol": 0, "session": 0}
started = time.monotonic()


def report(engine: str) -> None:
    total = sum(outcomes.values())
    print(f"engine: {engine}; inputs: {total}; seconds: {time.monotonic() - started:.0f}")
    for outcome, count in outcomes.most_common():
        print(f"  {outcome}: {count}")
    print(f"peak unconsumed bytes: protocol {peaks['protocol']}, session {peaks['session']}")
    print("escaped (not a PopctlError): 0")


def with_atheris(seconds: int) -> None:
    import atheris  # type: ignore[import-not-found]

    with atheris.instrument_imports(include=["popctl", "tests.support.fuzz_targets"]):
        from tests.support.fuzz_targets import run_protocol, run_session

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        target = fdp.ConsumeIntInRange(0, 1)
        calls = [fdp.ConsumeIntInRange(0, 40) for _ in range(fdp.ConsumeIntInRange(0, 10))]
        cuts = [fdp.ConsumeIntInRange(1, 300) for _ in range(fdp.ConsumeIntInRange(0, 20))]
        payload = fdp.ConsumeBytes(fdp.remaining_bytes())
        if target == 0:
            outcome, peak = run_protocol(calls, payload, cuts)
            peaks["protocol"] = max(peaks["protocol"], peak)
            outcomes[f"protocol {outcome}"] += 1
        else:
            outcome, peak = run_session(calls, b"+OK ready\r\n" + payload, cuts)
            peaks["session"] = max(peaks["session"], peak)
            outcomes[f"session {outcome}"] += 1
        if time.monotonic() - started >= seconds:  # libFuzzer's own exit skips Python's atexit
            report("atheris (libFuzzer, coverage-guided)")
            sys.stdout.flush()
            os._exit(0)

    atheris.Setup([sys.argv[0], "-max_len=4096"], one_input)
    atheris.Fuzz()


def with_hypothesis(examples: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.support.fuzz_targets import COMMANDS, PIECES, run_protocol, run_session

    data = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=64)),
                    max_size=80).map(b"".join)
    cuts = st.lists(st.integers(1, 300), max_size=40)
    many = settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))

    @many
    @given(st.lists(st.integers(0, len(COMMANDS) - 1), max_size=12), data, cuts)
    def protocol(commands: list[int], payload: bytes, splits: list[int]) -> None:
        outcome, peak = run_protocol(commands, payload, splits)
        peaks["protocol"] = max(peaks["protocol"], peak)
        outcomes[f"protocol {outcome}"] += 1

    @many
    @given(st.lists(st.integers(0, 40), max_size=8), data, cuts)
    def session(calls: list[int], payload: bytes, splits: list[int]) -> None:
        outcome, peak = run_session(calls, b"+OK ready\r\n" + payload, splits)
        peaks["session"] = max(peaks["session"], peak)
        outcomes[f"session {outcome}"] += 1

    protocol()
    session()
    report(f"Hypothesis, {examples} examples per target")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120, help="atheris run time")
    parser.add_argument("--examples", type=int, default=20000, help="Hypothesis examples")
    parser.add_argument("--hypothesis", action="store_true", help="use Hypothesis even if "
                        "atheris is installed")
    args = parser.parse_args()
    if not args.hypothesis:
        try:
            import atheris  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            print("atheris is not installed: using Hypothesis", file=sys.stderr)
        else:
            with_atheris(args.seconds)
            return
    with_hypothesis(args.examples)


if __name__ == "__main__":
    main()
