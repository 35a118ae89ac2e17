"""Terminal display width of table cells, for when the wcwidth package is not installed.

tabulate measures cells with ``wcwidth.wcswidth`` when wcwidth is there (an optional extra a
plain ``pip install`` does not bring) and with ``len`` otherwise, which puts every row holding
a CJK subject or an emoji out of line. This computes the same widths from the standard library's
Unicode tables: two columns for East Asian Wide and Fullwidth characters, none for combining
marks and format characters, one for the rest. (wcwidth also measures emoji sequences joined by
ZWJ as one glyph; here each part counts.) It is also faster to import than wcwidth.
``truncate`` cuts text to a width by the same measure, for tables fitted to a terminal.
"""

from __future__ import annotations

import unicodedata

__all__ = ["truncate", "wcswidth", "wcwidth"]

_ZERO_CATEGORIES = frozenset(("Mn", "Me", "Cf", "Cc"))
_MODIFIERS = ("\U0001f3fb", "\U0001f3ff")  # emoji skin tones: they change the glyph before them


def wcwidth(char: str) -> int:
    """Columns one character takes: 0, 1 or 2."""
    if unicodedata.east_asian_width(char) in ("W", "F"):
        return 2
    if unicodedata.category(char) in _ZERO_CATEGORIES and char != "\xad":
        return 0  # the soft hyphen, a format character, is shown as a hyphen
    if "\u1160" <= char <= "\u11ff":  # Hangul medial vowels and final consonants: join the
        return 0  # syllable before them
    return 1


class _Widths(dict[str, int]):
    """Each character's width, computed once: a table cell is measured several times."""

    def __missing__(self, char: str) -> int:
        self[char] = width = wcwidth(char)
        return width


_widths = _Widths()


def wcswidth(text: str) -> int:
    """Columns ``text`` takes (table cells hold no control characters)."""
    if text.isascii():
        return len(text)
    width = sum(map(_widths.__getitem__, text))
    if max(text) >= _MODIFIERS[0]:
        width -= 2 * sum(1 for i, c in enumerate(text)
                         if i and _MODIFIERS[0] <= c <= _MODIFIERS[1])
    return width


_ELLIPSIS = "…"
_JOINERS = "\u200d"  # a ZWJ left at the end would join the ellipsis to the glyph before it


def truncate(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` columns with an ellipsis, measured as wcswidth does;
    a wide character that would not fit whole is left out, never split."""
    if wcswidth(text) <= width:
        return text
    if width <= 0:
        return ""
    room, used, end = width - 1, 0, 0  # the ellipsis takes one column
    for i, char in enumerate(text):
        columns = 0 if i and _MODIFIERS[0] <= char <= _MODIFIERS[1] else _widths[char]
        if used + columns > room:
            break
        used += columns
        end = i + 1
    return text[:end].rstrip().rstrip(_JOINERS) + _ELLIPSIS
