"""A guard against hangs and runaway complexity, for tests that feed popctl hostile input.

Not a speed target (those are measured in benchmarks/, not asserted in tests): the bound is a
hundred times what the work takes, and only a hang or a quadratic blow-up reaches it. The test
is stopped there by SIGALRM instead of running for minutes.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

import pytest


@contextlib.contextmanager
def hang_guard(seconds: float) -> Iterator[None]:
    """Fail the test if the block is still running after ``seconds`` (main thread only)."""
    def expired(_signum: int, _frame: FrameType | None) -> None:
        pytest.fail(f"still running after {seconds:g} s: a hang or runaway complexity",
                    pytrace=False)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
