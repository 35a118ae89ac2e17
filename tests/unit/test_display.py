"""popctl.display: the one function that makes server text safe to show, and the Redactor that
hides a secret a server quotes back (issue 11). The command-line cases are in
tests/cli/test_terminal_safety.py."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popctl.display import Redactor, safe
from popctl.errors import ServerError
from tests.support.layers import imports
from tests.support.secrets import assert_hidden

UNSAFE = [*map(chr, range(0x09)), *map(chr, range(0x0A, 0x20)), "\x7f",
          *map(chr, range(0x80, 0xA0)), "\u061c", "\u200e", "\u200f", "\u2028", "\u2029",
          "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
          "\u2069", "\ud800", "\udfff"]
FORBIDDEN = re.compile("[" + "".join(map(re.escape, UNSAFE)) + "]")


@pytest.mark.parametrize("char", UNSAFE, ids=[f"U+{ord(c):04X}" for c in UNSAFE])
def test_every_unsafe_character_becomes_a_replacement_character(char: str) -> None:
    assert safe(f"a{char}b") == "a\ufffdb"


def test_ordinary_text_is_left_alone() -> None:
    for text in ("+OK POP3 ready <1.2@host>", "Grüße, 日本語, emoji 👩‍👩‍👧 (ZWJ kept)",
                 "tab\tkept", "", "שלום עולם"):
        assert safe(text) == text


@settings(max_examples=200)
@given(st.text())
def test_safe_removes_every_unsafe_character_one_for_one(text: str) -> None:
    shown = safe(text)
    assert FORBIDDEN.search(shown) is None
    assert len(shown) == len(text)
    assert safe(shown) == shown


def test_an_error_message_is_always_safe() -> None:
    error = ServerError("STAT failed: server said: \x1b]0;title\x07 \u009b2J \u202eabc")
    assert str(error) == "STAT failed: server said: \ufffd]0;title\ufffd \ufffd2J \ufffdabc"
    assert error.message == str(error)


def test_display_is_at_the_bottom_of_the_layers() -> None:
    assert not {name for name in imports("display") if name.startswith("popctl")}


SECRET = "Zq8-popctl-NeverShowThis-71x0"


def test_redactor_hides_the_secret_in_every_form() -> None:
    redact = Redactor([SECRET])
    plain_blob = base64.b64encode(f"\0alice\0{SECRET}".encode()).decode()
    for text in (f"wrong password {SECRET}", f"wrong password {SECRET.upper()}",
                 f"[AUTH] {plain_blob} rejected", base64.b64encode(SECRET.encode()).decode(),
                 f"e=bad proof for {safe(SECRET)}"):
        shown = redact(text)
        assert "***" in shown
        assert_hidden(shown, SECRET)
    assert redact(f"[AUTH] {plain_blob} rejected") == "[AUTH] *** rejected"


@settings(max_examples=200)
@given(st.binary(max_size=8), st.binary(max_size=8), st.text(max_size=8))
def test_redactor_hides_base64_at_any_alignment(prefix: bytes, suffix: bytes,
                                                 around: str) -> None:
    carried = base64.b64encode(prefix + SECRET.encode() + suffix).decode()
    assert_hidden(Redactor([SECRET])(f"{around} {carried} {around}"), SECRET)


def test_a_short_secret_is_hidden_only_where_it_stands_alone() -> None:
    redact = Redactor(["tok"])
    assert redact("invalid token") == "invalid token"
    assert redact("wrong password 'tok' (TOK)") == "wrong password '***' (***)"


def test_a_redactor_without_secrets_changes_nothing() -> None:
    for redact in (Redactor(), Redactor([None, ""])):
        assert not redact
        assert redact("anything \x1b at all") == "anything \x1b at all"
