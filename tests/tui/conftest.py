"""The browser's tests need Textual (the ``tui`` extra, also in ``test``): without it they skip,
except under CI, where they fail (tests/support/ci.py)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.support.ci import skip_or_fail


@pytest.fixture(autouse=True)
def _textual() -> None:
    if importlib.util.find_spec("textual") is None:
        skip_or_fail("textual is not installed (pip install -e '.[test]' brings it)")
