"""The filter line of ``popctl browse``: the command line's filters typed as words.

``from:REGEX``, ``subject:REGEX``, ``>SIZE``, ``<SIZE``, ``older:AGE``, ``newer:AGE``, each
parsed by ``popctl.selection`` as ``--from``, ``--subject``, ``--larger-than``,
``--smaller-than``, ``--older-than`` and ``--newer-than`` are; any other word must appear in
the From or the Subject (case-insensitive). Words combine with AND; quotes group a word with
spaces (``subject:"weekly report"``). No Textual here: the parsing is tested on its own.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from popctl import selection
from popctl.errors import UsageError
from popctl.query import Query, Row, matches

FILTER_HELP = ("from:REGEX  subject:REGEX  >SIZE  <SIZE  older:AGE  newer:AGE  WORD "
               "(e.g. from:example.org >1M older:7d)")

_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "from": ("sender", lambda v: selection.compile_regex(v, "from:")),
    "subject": ("subject", lambda v: selection.compile_regex(v, "subject:")),
    "older": ("older_than", selection.parse_duration),
    "newer": ("newer_than", selection.parse_duration),
}


class Filter(NamedTuple):
    """What the filter line says: a Query of the CLI's filters, and plain words."""

    query: Query
    words: tuple[str, ...] = ()
    text: str = ""

    @property
    def empty(self) -> bool:
        return not (self.words or self.query.filters)

    def __call__(self, row: Row, now: datetime) -> bool:
        if self.words:
            haystack = f"{row.sender or ''}\n{row.subject or ''}".casefold()
            if not all(word in haystack for word in self.words):
                return False
        return matches(self.query, row, now)


NO_FILTER = Filter(Query())


def parse_filter(text: str) -> Filter:
    """The filter ``text`` says; a UsageError names the word that is wrong."""
    try:
        words = shlex.split(text)
    except ValueError as e:  # an unclosed quote, while the user is still typing it
        raise UsageError(f"filter: {e}") from None
    given: dict[str, Any] = {}
    plain: list[str] = []
    for word in words:
        key, colon, value = word.partition(":")
        if word[:1] in "<>" and len(word) > 1:
            name = "larger_than" if word[0] == ">" else "smaller_than"
            given[name] = selection.parse_size(word[1:])
        elif colon and key.lower() in _KEYS and value:
            name, parse = _KEYS[key.lower()]
            given[name] = parse(value)
        else:
            plain.append(word.casefold())
    return Filter(Query(**given), tuple(plain), text)
