"""Server text made safe to show: ``safe`` neutralises what a terminal would obey, ``Redactor``
hides the user's secret when a server quotes it back.

Anything a server sends is untrusted. Wherever it becomes text for a person (an error, a note, a
``--trace`` line, a table cell) it passes through ``safe``, once, here; callers do not filter it
themselves. JSON, NDJSON and the message bytes of ``retr`` are data and carry the text exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

# What a terminal (or a reader) must never receive from a server, each replaced by U+FFFD:
# * C0 controls but TAB, and DEL: ESC starts escape sequences (clear the screen, set the window
#   title, rewrite what was printed), CR and BS overwrite text, LF forges a second line;
# * C1 controls U+0080-U+009F: U+009B is a one-character CSI, U+009D an OSC, for terminals that
#   take them;
# * bidirectional controls (U+061C, U+200E/F, U+202A-U+202E, U+2066-U+2069) and the line and
#   paragraph separators U+2028/9: they reorder or break what is shown ("Trojan Source"), so
#   "[AUTH] \u202egnp.exe" reads as something else;
# * lone surrogates, which cannot be written as UTF-8 at all.
# U+FFFD rather than a ``\x1b`` spelling: one column wide, like the character it replaces, so
# tables keep their shape, and never doubled by a repr() of text already made safe. TAB is kept:
# it only moves the cursor forward on the same line, and folded header lines begin with it.
# (A pattern string: re compiles it on first use and caches it, so importing this module, which
# every command does through errors.py, costs no compilation.)
REPLACEMENT: Final = "\ufffd"
UNSAFE: Final = ("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                 "\ud800-\udfff]")


def safe(text: str) -> str:
    """``text`` with every control character (C0 but TAB, DEL, C1), bidirectional control and
    lone surrogate replaced by U+FFFD: nothing in it can move the cursor, change the terminal or
    reorder what is shown. Idempotent, and the identity on printable ASCII."""
    if text.isascii() and text.isprintable():
        return text
    return re.sub(UNSAFE, REPLACEMENT, text)


# --- secrets a server quotes back ---------------------------------------------------------------

REDACTED: Final = "***"

# A secret shorter than this also turns up inside ordinary words ("tok" in "token"), where it
# does not show which letters were the secret: it is hidden only where it stands alone.
_MIN_ANYWHERE: Final = 6
# A base64 piece shorter than this (4 characters, 24 bits of the secret) would turn up by chance
# in base64 a server sends for other reasons (a SCRAM nonce, a challenge).
_MIN_BASE64_PIECE: Final = 4
_BASE64_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def base64_pieces(secret: bytes) -> list[str]:
    """The base64 text that can only come from ``secret``, wherever it sits in an encoded blob.

    SASL carries the secret base64-encoded after a prefix of any length (PLAIN's
    ``\\0user\\0``, XOAUTH2's ``user=...\\x01auth=Bearer ``), so each of the three alignments
    counts; the first and last group of each mix in the bytes around the secret and are left out
    (the whole base64 word around a piece is hidden, so they go too).
    """
    import base64

    pieces = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret).decode("ascii")
        start = 4 if offset else 0
        end = len(encoded) if (offset + len(secret)) % 3 == 0 else len(encoded) - 4
        if end - start >= _MIN_BASE64_PIECE:
            pieces.append(encoded[start:end])
    return pieces


class Redactor:
    """Replaces a secret (as typed in any letter case, as ``safe`` shows it, and inside any
    base64 word) with ``***`` in server text. A Redactor without secrets returns text as is.

    A secret of fewer than 6 characters is hidden where it stands alone, not inside a longer
    word."""

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        plain: set[str] = set()
        encoded: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            plain.update((secret, safe(secret)))
            encoded.update(base64_pieces(secret.encode("utf-8", "surrogatepass")))
        alternatives = []
        if plain:
            words = [re.escape(word) if len(word) >= _MIN_ANYWHERE
                     else rf"(?<!\w){re.escape(word)}(?!\w)"
                     for word in sorted(plain, key=len, reverse=True)]  # longest first
            alternatives.append("(?P<plain>(?i:" + "|".join(words) + "))")
        if encoded:
            alternatives.append("(?P<b64>" + "|".join(map(re.escape, sorted(encoded))) + ")")
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or pattern.search(text) is None:
            return text
        spans: list[tuple[int, int]] = []
        for match in pattern.finditer(text):
            start, end = match.span()
            if spans and start < spans[-1][1]:
                continue  # inside the base64 word already hidden
            if match.lastgroup == "b64":
                # The whole base64 word: its edges hold bits of the secret too.
                while start > 0 and text[start - 1] in _BASE64_CHARS:
                    start -= 1
                while end < len(text) and text[end] in _BASE64_CHARS:
                    end += 1
                while end < len(text) and text[end] == "=":
                    end += 1
                if spans and start < spans[-1][1]:
                    spans[-1] = (spans[-1][0], end)
                    continue
            spans.append((start, end))
        parts: list[str] = []
        last = 0
        for start, end in spans:
            parts += (text[last:start], REDACTED)
            last = end
        parts.append(text[last:])
        return "".join(parts)
