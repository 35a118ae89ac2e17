from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popctl.headers import (
    MAX_FIELD_OCTETS,
    MAX_TEXT,
    HeaderSummary,
    decode_words,
    header_values,
    parse_date,
    summarize,
)
from tests.support.bounded import hang_guard


def block(*lines: str, eol: bytes = b"\r\n") -> bytes:
    return b"".join(line.encode("utf-8") + eol for line in lines) + eol


BASIC = block(
    "Return-Path: <bounce@example.org>",
    "From: Alice Example <alice@example.org>",
    "To: bob@example.net",
    "Subject: Quarterly report",
    "Date: Fri, 20 Nov 2026 14:03:00 +0100",
    "Message-ID: <20261120.1@example.org>",
)


def test_summarize_basic() -> None:
    assert summarize(BASIC) == HeaderSummary(
        sender="Alice Example <alice@example.org>",
        subject="Quarterly report",
        date="2026-11-20T14:03:00+01:00",
        message_id="<20261120.1@example.org>",
        sender_name="Alice Example",
        sender_address="alice@example.org",
    )


def test_lf_line_ends_give_the_same_summary() -> None:
    assert summarize(BASIC.replace(b"\r\n", b"\n")) == summarize(BASIC)


def test_empty_input() -> None:
    assert summarize(b"") == HeaderSummary(sender="", subject="", date=None, message_id=None,
                                           sender_name="", sender_address=None)


def test_missing_date_from_subject_message_id() -> None:
    assert summarize(block("To: bob@example.net")) == HeaderSummary("", "", None, None, "", None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Q, UTF-8
        ("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=", "Grüße aus Köln"),
        # B, UTF-8, emoji (4-byte sequence)
        ("=?utf-8?B?8J+OiSBQYXJ0eSE=?=", "🎉 Party!"),
        # Q, ISO-8859-1, lower-case q
        ("=?iso-8859-1?q?Caf=E9_cr=E8me?=", "Café crème"),
        # B, ISO-8859-15 (the euro sign is 0xA4 there)
        ("=?ISO-8859-15?B?pCAxMDA=?=", "€ 100"),
        # adjacent encoded words: the whitespace (even a fold) between them is dropped
        ("=?utf-8?q?Hello?= =?utf-8?q?_world?=", "Hello world"),
        ("=?utf-8?q?ab?=\r\n =?utf-8?q?cd?=", "abcd"),
        # different charsets, still adjacent encoded words
        ("=?iso-8859-1?q?=E9?= =?utf-8?q?=C3=A9?=", "éé"),
        # a multibyte character split across two words
        ("=?utf-8?q?=E2=82?= =?utf-8?q?=AC?=", "€"),
        # ordinary text around encoded words keeps its spaces
        ("Re: =?utf-8?q?caf=C3=A9?= now", "Re: café now"),
        ("=?utf-8?q?a?= and =?utf-8?q?b?=", "a and b"),
        # missing base64 padding is forgiven
        ("=?utf-8?b?w6k?=", "é"),
        # RFC 2231 language suffix on the charset
        ("=?utf-8*de?q?T=C3=BCr?=", "Tür"),
        # not encoded at all
        ("plain text", "plain text"),
    ],
)
def test_encoded_word_subjects(raw: str, expected: str) -> None:
    assert summarize(block(f"Subject: {raw}")).subject == expected


@pytest.mark.parametrize(
    "raw",
    [
        "=?x-no-such-charset?q?abc?=",  # unknown charset
        "=?base64?q?abc?=",  # a codec, but not a text one
        "=?utf-8?b?!!!?=",  # not base64
        "=?utf-8?b?w?=",  # base64 of impossible length
    ],
)
def test_undecodable_encoded_words_stay_raw(raw: str) -> None:
    assert summarize(block(f"Subject: {raw}")).subject == raw
    assert decode_words(f"{raw} =?utf-8?q?ok?=") == f"{raw} ok"


def test_invalid_bytes_in_a_known_charset_are_replaced() -> None:
    assert summarize(block("Subject: =?utf-8?q?a=FFb?=")).subject == "a\ufffdb"


def test_folded_headers_are_unfolded() -> None:
    data = b"Subject: a long\r\n subject\r\n\tthat goes on\r\nFrom: x@example.org\r\n\r\n"
    assert summarize(data).subject == "a long subject that goes on"


def test_parsing_stops_at_the_blank_line() -> None:
    data = b"Subject: real\r\n\r\nSubject: from the body\r\nFrom: body@example.org\r\n"
    assert summarize(data) == HeaderSummary("", "real", None, None, "", None)


def test_first_occurrence_wins() -> None:
    assert summarize(block("Subject: one", "Subject: two")).subject == "one"


def test_truncated_block() -> None:
    data = b"From: alice@example.org\r\nSubject: cut off in the mid"
    assert summarize(data) == HeaderSummary("alice@example.org", "cut off in the mid", None, None,
                                            "", "alice@example.org")


def test_junk_lines_are_skipped() -> None:
    data = b"From alice@example.org Fri Nov 20 14:03:00 2026\nthis is junk\nSubject: ok\n\n"
    assert summarize(data).subject == "ok"


def test_eight_bit_headers() -> None:
    # raw UTF-8 (RFC 6532) and raw Latin-1 from a legacy mailer
    data = b"Subject: Gr\xc3\xbc\xc3\x9fe\r\nFrom: Ren\xe9 <rene@example.org>\r\n\r\n"
    summary = summarize(data)
    assert summary.subject == "Grüße"
    assert summary.sender == "René <rene@example.org>"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Subject: \x1b[31mred\x1b[0m", "[31mred[0m"),
        ("Subject: =?utf-8?q?=1B]0;title=07x?=", "]0;titlex"),
        ("Subject: =?utf-8?q?=C2=9B31mCSI?=", "31mCSI"),  # U+009B, the one-byte CSI
        ("Subject: a=?utf-8?q?=0D=0A?=b", "a  b"),  # an encoded line break cannot split a row
        ("Subject: del\x7fete", "delete"),
    ],
)
def test_control_characters_are_removed(raw: str, expected: str) -> None:
    assert summarize(block(raw)).subject == expected


@pytest.mark.parametrize(
    ("raw", "expected", "name", "address"),
    [
        ("alice@example.org", "alice@example.org", "", "alice@example.org"),
        ("<alice@example.org>", "alice@example.org", "", "alice@example.org"),
        ("Alice <alice@example.org>", "Alice <alice@example.org>", "Alice", "alice@example.org"),
        # a name holding specials keeps its quotes (issue 11): it must not read as two addresses
        ('"Example, Alice" <alice@example.org>', '"Example, Alice" <alice@example.org>',
         "Example, Alice", "alice@example.org"),
        ('"Mr \\"X\\"" <x@example.org>', '"Mr \\"X\\"" <x@example.org>', 'Mr "X"',
         "x@example.org"),
        ('"a\\\\b" <x@example.org>', '"a\\\\b" <x@example.org>', "a\\b", "x@example.org"),
        ('"Alice Example" <alice@example.org>', "Alice Example <alice@example.org>",
         "Alice Example", "alice@example.org"),  # no specials: no quotes needed
        ("J. Smith <j@example.org>", "J. Smith <j@example.org>", "J. Smith", "j@example.org"),
        # readers fold a run of spaces in a bare name into one: quoted, it reads back as it is
        ("=?utf-8?q?Ann__Lee?= <a@example.org>", '"Ann  Lee" <a@example.org>', "Ann  Lee",
         "a@example.org"),
        ("=?utf-8?q?J=C3=B6rg_M=C3=BCller?= <j@example.org>", "Jörg Müller <j@example.org>",
         "Jörg Müller", "j@example.org"),
        ("=?utf-8?q?M=C3=BCller=2C_J=C3=B6rg?= <j@example.org>",
         '"Müller, Jörg" <j@example.org>', "Müller, Jörg", "j@example.org"),
        ('"=?utf-8?q?J=C3=B6rg?=" <j@example.org>', "Jörg <j@example.org>", "Jörg",
         "j@example.org"),
        ("alice@example.org (Alice)", "Alice <alice@example.org>", "Alice", "alice@example.org"),
        ("a@example.org, Bob <b@example.org>", "a@example.org, Bob <b@example.org>", "",
         "a@example.org"),
        ('"Garcia, Trent" <t@example.org>, "Lee; Ann" <a@example.org>',
         '"Garcia, Trent" <t@example.org>, "Lee; Ann" <a@example.org>', "Garcia, Trent",
         "t@example.org"),
        ("Mailer Daemon", "Mailer Daemon", "", None),
        ("=?utf-8?q?Nur_ein_Name?=", "Nur ein Name", "", None),
        ("undisclosed-recipients:;", "undisclosed-recipients:;", "", None),
        ("\x1b[2J <evil@example.org>", '"[2J" <evil@example.org>', "[2J", "evil@example.org"),
    ],
)
def test_sender_display_form(raw: str, expected: str, name: str, address: str | None) -> None:
    summary = summarize(block(f"From: {raw}"))
    assert (summary.sender, summary.sender_name, summary.sender_address) == (
        expected, name, address)
    if address is not None:  # the display form reads back as the same mailboxes
        from email.utils import getaddresses

        assert getaddresses([summary.sender])[0] == (name, address)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Fri, 20 Nov 2026 14:03:00 +0100", "2026-11-20T14:03:00+01:00"),
        ("Fri, 20 Nov 2026 14:03:00 +0100 (CET)", "2026-11-20T14:03:00+01:00"),
        ("20 Nov 2026 14:03:00 +0100", "2026-11-20T14:03:00+01:00"),  # no day of week
        ("Fri, 20 Nov 2026 14:03 +0100", "2026-11-20T14:03:00+01:00"),  # no seconds
        ("Fri, 20 Nov 26 14:03:00 +0100", "2026-11-20T14:03:00+01:00"),  # obsolete 2-digit year
        ("Fri, 20 Nov 99 14:03:00 +0100", "1999-11-20T14:03:00+01:00"),
        ("Fri, 20 Nov 2026 14:03:00 EST", "2026-11-20T14:03:00-05:00"),  # obsolete zone name
        ("Fri, 20 Nov 2026 14:03:00 GMT", "2026-11-20T14:03:00+00:00"),
        ("Fri, 20 Nov 2026 14:03:00 -0000", "2026-11-20T14:03:00+00:00"),  # unknown zone: UTC
        ("Fri,  20  Nov  2026\r\n 14:03:00 +0100", "2026-11-20T14:03:00+01:00"),  # folded
    ],
)
def test_dates(value: str, expected: str) -> None:
    assert summarize(block(f"Date: {value}")).date == expected


@pytest.mark.parametrize(
    "value",
    ["", "yesterday", "Fri, 32 Nov 2026 14:03:00 +0100", "Fri, 20 Nov 2026 25:00:00 +0100",
     "Fri, 20 Nov 2026 14:03:00 +9999", "Fri, 20 Nov 99999 14:03:00 +0000", "\x1b"],
)
def test_unparseable_dates_are_none(value: str) -> None:
    assert summarize(block(f"Date: {value}")).date is None
    assert parse_date(value) is None


def test_parse_date() -> None:
    assert parse_date(None) is None
    assert parse_date("Fri, 20 Nov 2026 14:03:00 +0100") == datetime(
        2026, 11, 20, 14, 3, tzinfo=timezone(timedelta(hours=1)))
    naive = parse_date("Fri, 20 Nov 2026 14:03:00 -0000")
    assert naive == datetime(2026, 11, 20, 14, 3, tzinfo=UTC)
    assert naive is not None and naive.tzinfo is UTC


def test_message_id() -> None:
    assert summarize(block("Message-Id:  <a.b@c> ")).message_id == "<a.b@c>"
    assert summarize(block("Message-ID:")).message_id is None


def test_header_values() -> None:
    data = block(
        "Received: from a",
        "X-Spam-Status: No, score=-0.1",
        "received: from b",
        "\tby c",
        "Subject: =?utf-8?q?caf=C3=A9?=",
    )
    assert header_values(data, "Received") == ["from a", "from b by c"]
    assert header_values(data, "X-SPAM-STATUS") == ["No, score=-0.1"]
    assert header_values(data, "Subject") == ["café"]
    assert header_values(data, "X-Missing") == []
    assert header_values(b"", "Subject") == []


def test_header_name_with_space_before_colon() -> None:
    # obsolete syntax (RFC 5322 4.5)
    assert header_values(b"Subject : old\r\n\r\n", "subject") == ["old"]


@given(st.binary(max_size=400))
def test_summarize_never_raises_and_never_returns_controls(data: bytes) -> None:
    summary = summarize(data)
    for text in (summary.sender, summary.subject, summary.date or "", summary.message_id or ""):
        assert not any(unicodedata.category(c) == "Cc" for c in text)


@given(st.lists(st.sampled_from([
    b"Subject: ", b"From: ", b"Date: ", b"=?", b"?=", b"?q?", b"?B?", b"utf-8", b"x-bad", b"=C3",
    b"=A9", b"w6k=", b"<", b">", b"@", b'"', b",", b"\r\n", b"\n", b" ", b"\t", b"\x1b", b"\xff",
    b"\xc3\xa9", b"(", b")", b"Fri, 20 Nov 2026", b"+0100", b"-", b"_",
]), max_size=40))
def test_summarize_never_raises_on_header_like_junk(parts: list[bytes]) -> None:
    data = b"".join(parts)
    summarize(data)
    header_values(data, "Subject")


def test_a_typical_header_block() -> None:
    """A block as real mail has it (eight Received hops, encoded words, a DKIM signature); how
    fast it is summarized is measured by benchmarks/micro.py."""
    received = b"".join(
        b"Received: from mx%d.example.org (mx%d.example.org [192.0.2.%d])\r\n"
        b"\tby mail.example.net with ESMTPS id abc%d\r\n"
        b"\tfor <me@example.net>; Fri, 20 Nov 2026 14:03:00 +0100\r\n" % (i, i, i, i)
        for i in range(8))
    data = (received
            + b"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>\r\n"
            + b"Subject: =?UTF-8?B?8J+OiSBQYXJ0eSE=?=\r\n =?UTF-8?Q?_und_caf=C3=A9?=\r\n"
            + b"Date: Fri, 20 Nov 2026 14:03:00 +0100\r\nMessage-ID: <a@example.org>\r\n"
            + b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org;\r\n\tb=" + b"A" * 500
            + b"\r\n\r\n")
    assert 1900 < len(data) < 2200
    summary = summarize(data)
    assert (summary.sender, summary.date) == ("Jörg Müller <joerg@example.org>",
                                              "2026-11-20T14:03:00+01:00")
    assert summary.subject == "🎉 Party! und café"


HEADER_PIECES = st.lists(st.sampled_from([
    b"From: a@b.example", b"from :x", b"FROM\t: Y <y@z>", b"Subject: one", b"subject:",
    b"Date: Fri, 20 Nov 2026 14:03:00 +0100", b"Message-ID: <m@x>", b"message-id :<n@y>",
    b"Received: from x by y", b"From x  Fri Nov 20", b"junk line", b" folded", b"\tfolded tab",
    b"", b"\r", b"\r\r", b" ", b"X-From: no", b"fromage: no", b"\xff\xfe: bin",
    b"Subject: \xe9t\xe9", b"from", b"date\t \t", b" from: no",
]), max_size=14)


def _first_of_each(data: bytes) -> dict[str, bytes]:
    from popctl.headers import _fields

    expected: dict[str, bytes] = {}
    for name, raw in _fields(data):
        if name in {"from", "subject", "date", "message-id"}:
            expected.setdefault(name, raw)
    return expected


def _summary_fields_by_name(data: bytes) -> dict[str, bytes]:
    from popctl.headers import _summary_fields

    names = {ord(name[0]): name for name in ("from", "subject", "date", "message-id")}
    return {names[key]: raw for key, raw in _summary_fields(data).items()}


@given(HEADER_PIECES, st.sampled_from([b"\n", b"\r\n", b"\r", b"\n\r"]), st.booleans())
def test_summary_fields_agree_with_the_full_field_parser(pieces: list[bytes], eol: bytes,
                                                         final_eol: bool) -> None:
    data = eol.join(pieces) + (eol if final_eol else b"")
    assert _summary_fields_by_name(data) == _first_of_each(data)


@given(st.binary(max_size=300))
def test_summary_fields_agree_on_arbitrary_bytes(data: bytes) -> None:
    assert _summary_fields_by_name(data) == _first_of_each(data)


_DATE_PIECES = st.tuples(
    st.sampled_from(["", "Mon, ", "Sun,", "Tue ", "Foo, ", "mon, ", "Thu,  "]),
    st.sampled_from(["1", "07", "26", "31", "0", "32", "99", " 5"]),
    st.sampled_from([" "]),
    st.sampled_from(["Jan", "Feb", "Dec", "jan", "JAN", "Foo", "Sep"]),
    st.sampled_from([" 2026 ", " 1999 ", " 0050 ", " 1000 ", " 99 ", " 9999 ", "  2026 "]),
    st.sampled_from(["16:03:00", "6:03", "23:59:59", "24:00:00", "16:03:60", "16:3:00", "00:00"]),
    st.sampled_from([" +0000", " -0000", " +0530", " -1200", " +2400", " +0099", " -2359",
                     " GMT", " UT", " EST", "", " +00", " +0000 (UTC)", " +0100 (CET)",
                     " +0000 (a) (b)", " +0000 junk"]),
)


@settings(max_examples=2000)
@given(_DATE_PIECES)
def test_parse_date_fast_path_agrees_with_email_utils(pieces: tuple[str, ...]) -> None:
    from popctl.headers import _parse_date_general

    text = "".join(pieces)
    fast, general = parse_date(text), _parse_date_general(text.strip())
    assert (fast.isoformat() if fast else None) == (general.isoformat() if general else None)


# --- hostile headers (issue 11) ------------------------------------------------------------------

# Every codec name Python knows of that is not a MIME charset, and some that are: what an encoded
# word may claim.
ODD_CHARSETS = ["utf-7", "unicode_escape", "raw_unicode_escape", "punycode", "idna", "rot13",
                "rot_13", "base64", "hex", "zlib", "bz2", "uu", "quopri", "undefined", "charmap",
                "mbcs", "oem", "utf-16", "utf-16-le", "utf-32", "utf-8-sig", "utf-8", "latin-1",
                "gb2312", "iso-2022-jp", "shift_jis", "big5", "cp1252", "koi8-r", "palmos",
                "x-unknown", "utf-8*en", ""]


def _word(charset: str, encoding: str, octets: bytes) -> bytes:
    import base64

    text = base64.b64encode(octets) if encoding == "B" else b"".join(b"=%02X" % b for b in octets)
    return b"=?%s?%s?%s?=" % (charset.encode("ascii", "replace"), encoding.encode(), text)


_CHARSET_NAMES = st.one_of(st.sampled_from(ODD_CHARSETS),
                           st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126,
                                                          blacklist_characters="?"),
                                   min_size=1, max_size=20))
_WORDS = st.lists(st.builds(_word, _CHARSET_NAMES, st.sampled_from(["Q", "B"]),
                            st.binary(max_size=30)), max_size=5)


def _assert_valid(summary: HeaderSummary) -> None:
    for text in summary:
        if text is not None:
            text.encode("utf-8")  # no lone surrogate, whatever a charset decoded to
            assert len(text) <= MAX_TEXT
            assert not any(unicodedata.category(c) == "Cc" for c in text)


@settings(max_examples=200)
@given(st.binary(max_size=200), _WORDS, st.binary(max_size=200), _WORDS, st.binary(max_size=60))
def test_any_bytes_and_any_charset_give_valid_text_and_a_cache_that_round_trips(
        subject: bytes, subject_words: list[bytes], sender: bytes, sender_words: list[bytes],
        date: bytes) -> None:
    import tempfile

    from popctl.cache import HeaderCache

    clean = [v.replace(b"\r", b" ").replace(b"\n", b" ") for v in (subject, sender, date)]
    data = (b"Subject: " + clean[0] + b" ".join(subject_words) + b"\r\nFrom: "
            + b" ".join(sender_words) + clean[1] + b"\r\nDate: " + clean[2] + b"\r\n\r\n")
    summary = summarize(data)
    _assert_valid(summary)
    for name in ("Subject", "From"):
        for value in header_values(data, name):
            value.encode("utf-8")
    with tempfile.TemporaryDirectory() as directory:
        cache = HeaderCache("a@b:1", f"{directory}/c.json")
        cache.put("u", 1, summary.sender, summary.subject, summary.date, summary.sender_name,
                  summary.sender_address)
        assert cache.save()
        assert HeaderCache("a@b:1", f"{directory}/c.json").get("u", 1) == (
            1, summary.sender, summary.subject, summary.date, summary.sender_name,
            summary.sender_address)


@pytest.mark.parametrize(("raw", "expected"), [
    ("=?utf-7?q?+2AA-?=", "\ufffd"),  # UTF-7 decodes "+2AA-" to a lone U+D800
    ("=?utf-7?q?a+2AA-b?= c", "a\ufffdb c"),
    ("=?utf-7?q?+2D3eAQ-?=", "\U0001f601"),  # a surrogate pair is one character: kept
    ("=?utf-16-le?b?ANg=?=", "\ufffd"),  # a lone surrogate in UTF-16: the codec replaces it
])
def test_lone_surrogates_become_replacement_characters(raw: str, expected: str) -> None:
    assert decode_words(raw) == expected
    assert summarize(block(f"Subject: {raw}")).subject == expected


@pytest.mark.parametrize("charset", [
    "unicode_escape", "unicode-escape", "raw_unicode_escape", "punycode", "idna", "rot13",
    "rot_13", "base64", "hex", "zlib", "bz2", "uu", "quopri", "undefined", "charmap", "mbcs",
    "oem", "x-unknown", "", "utf-8\x00",
])
def test_codecs_that_are_no_charset_are_refused(charset: str) -> None:
    from popctl.headers import _charset

    assert _charset(charset) is None
    raw = f"=?{charset}?q?=5Cud800_=5Cx1b_abc?="
    if charset and "\x00" not in charset:
        assert decode_words(raw) == raw  # kept as it was: visible, not decoded


@pytest.mark.parametrize("charset", [
    "utf-8", "UTF-8", "us-ascii", "iso-8859-1", "iso-8859-15", "windows-1252", "cp1252",
    "koi8-r", "utf-7", "utf-16", "gb2312", "gbk", "gb18030", "big5", "shift_jis", "euc-jp",
    "iso-2022-jp", "euc-kr", "tis-620", "utf-8*de",
])
def test_real_charsets_are_accepted(charset: str) -> None:
    from popctl.headers import _charset

    assert _charset(charset) is not None


def test_a_codec_registered_by_another_package_is_not_trusted() -> None:
    import codecs

    from popctl.headers import _charset

    def search(name: str) -> codecs.CodecInfo | None:
        if name != "x_popctl_test":
            return None
        utf8 = codecs.lookup("utf-8")
        return codecs.CodecInfo(utf8.encode, utf8.decode, name="x-popctl-test")

    codecs.register(search)
    try:
        assert codecs.lookup("x-popctl-test").name == "x-popctl-test"
        assert _charset("x-popctl-test") is None
    finally:
        codecs.unregister(search)


# Field shapes that made 0.1.0's parsers quadratic (or worse), each about 99 KB: every one is now
# cut to MAX_FIELD_OCTETS and parsed in one pass.
def _fold(value: str) -> str:
    from benchmarks.hostile_headers import fold

    return fold(value)


HOSTILE_FIELDS = {
    "name-then-blanks": "From: " + _fold("Mallory" + " " * 99_000 + "x"),
    "blanks-then-name": "From: " + _fold(" " * 99_000 + "x"),
    "blanks-then-address": "From: " + _fold("Mallory" + " " * 99_000 + "<a@b.example>"),
    "tabs": "From: Mallory" + "\t" * 99_000 + "x",
    "many-ats": "From: " + _fold("a@" * 49_000 + "b"),
    "quotes-and-ats": "From: " + _fold('"@' * 49_000),
    "angles-and-ats": "From: " + _fold("<@" * 49_000),
    "many-mailboxes": "From: " + _fold(", ".join(f'"L{i}, F" <u{i}@x.example>'
                                                 for i in range(3_300))),
    "encoded-word-starts": "Subject: " + "=?" * 49_000,
    "half-encoded-words": "Subject: " + "=?a?q?" * 16_000,
    "adjacent-words": "Subject: " + _fold(" ".join(["=?utf-8?q?abc?="] * 6_600)),
    "punycode-digits": "Subject: " + _fold(" ".join(["=?punycode?q?" + "9" * 60 + "?="] * 1_300)),
    "long-date": "Date: " + _fold("Fri, 20 Nov 2026 14:03:00 +0100 " + "(x) " * 25_000),
}


@pytest.mark.parametrize("field", list(HOSTILE_FIELDS), ids=list(HOSTILE_FIELDS))
def test_hostile_fields_are_parsed_in_bounded_time(field: str) -> None:
    data = HOSTILE_FIELDS[field].encode() + b"\r\n\r\n"
    # 0.1.0 took 21 s for "name-then-blanks" and did not finish "blanks-then-name" in minutes;
    # now each takes about a millisecond.
    with hang_guard(5):
        summary = summarize(data)
        header_values(data, field.split(":")[0] if ":" in field else "From")
    _assert_valid(summary)


def test_parsers_never_see_more_than_max_field_octets(monkeypatch: pytest.MonkeyPatch) -> None:
    from popctl import headers

    seen: list[int] = []
    parse_sender, unstructured = headers._parse_sender, headers._unstructured

    def sender_spy(value: str) -> headers._Sender:
        seen.append(len(value.encode()))
        return parse_sender(value)

    def unstructured_spy(value: str) -> str:
        seen.append(len(value.encode()))
        return unstructured(value)

    monkeypatch.setattr(headers, "_parse_sender", sender_spy)
    monkeypatch.setattr(headers, "_unstructured", unstructured_spy)
    data = b"From: " + b"a" * 200_000 + b"\r\nSubject: " + b"b " * 100_000 + b"\r\n\r\n"
    summary = summarize(data)
    assert seen and max(seen) <= MAX_FIELD_OCTETS
    assert summary.sender == "a" * (MAX_TEXT - 1) + "\u2026"
    assert summary.subject == ("b " * MAX_TEXT)[:MAX_TEXT - 1].rstrip() + "\u2026"


def test_texts_are_cut_at_max_text_with_an_ellipsis() -> None:
    # 200 KB of Subject: 1,000 characters kept, the last one "…"
    summary = summarize(block("Subject: " + "x" * 200_000, "Message-ID: <" + "m" * 5000 + ">"))
    assert len(summary.subject) == MAX_TEXT and summary.subject.endswith("\u2026")
    assert summary.message_id is not None and len(summary.message_id) == MAX_TEXT
    # exactly MAX_TEXT characters: nothing cut
    assert summarize(block("Subject: " + "y" * MAX_TEXT)).subject == "y" * MAX_TEXT
    # a field cut at MAX_FIELD_OCTETS whose text is shorter still says it was cut
    words = " ".join(["=?utf-8?q?=E4=B8=AD=E6=96=87?="] * 800)  # 23 KB of encoded words
    subject = summarize(block("Subject: " + words)).subject
    assert subject.endswith("\u2026") and set(subject[:-1]) == {"中", "文"}
    # a long name and address: each is cut the same way
    summary = summarize(block(f"From: {'N' * 3000} <{'a' * 3000}@example.org>"))
    assert summary.sender_name == "N" * (MAX_TEXT - 1) + "\u2026"
    assert summary.sender_address == "a" * (MAX_TEXT - 1) + "\u2026"


def test_a_utf8_character_cut_in_two_by_the_octet_limit_stays_utf8() -> None:
    from popctl.headers import _bytes_to_text

    value = "é" * MAX_FIELD_OCTETS  # two octets each: the cut falls inside or between them
    data = b"Subject: x" + value.encode() + b"\r\n\r\n"
    assert set(summarize(data).subject[1:-1]) == {"é"}
    assert _bytes_to_text("aé".encode()[:-1]) == "a"  # the half character is dropped
    assert _bytes_to_text(b"a\xff") == "a\xff"  # not UTF-8 at all: Latin-1, as before


def test_many_short_continuation_lines_are_unfolded_in_linear_time() -> None:
    data = b"X-Long: start\r\n" + b" a\r\n" * 60_000 + b"Subject: s\r\n\r\n"
    with hang_guard(5):
        [value] = header_values(data, "X-Long")
    assert value.startswith("start a a")  # decoded from the first MAX_FIELD_OCTETS only
    assert header_values(data, "Subject") == ["s"]


_NAME_TEXT = st.text(alphabet=st.sampled_from(list('ab Zé中,;:"\\()<>[]@.\'-_!#')),
                     min_size=1, max_size=20)


@settings(max_examples=200)
@given(_NAME_TEXT, st.sampled_from(["a@example.org", "first.last+tag@sub.example.net"]),
       st.sampled_from(["B", "quoted"]))
def test_display_form_reads_back_as_the_same_single_mailbox(name: str, address: str,
                                                             form: str) -> None:
    import base64
    from email.utils import getaddresses

    if form == "B":
        raw = f"=?utf-8?b?{base64.b64encode(name.encode()).decode()}?= <{address}>"
    else:
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        raw = f'"{escaped}" <{address}>'
    summary = summarize(block(f"From: {raw}"))
    expected_name = name.strip()
    assert (summary.sender_name, summary.sender_address) == (expected_name, address)
    assert getaddresses([summary.sender]) == [(expected_name, address)]


@settings(max_examples=200)
@given(st.lists(st.tuples(_NAME_TEXT, st.sampled_from(["a@x.example", "b.c@y.example"])),
                min_size=1, max_size=4))
def test_several_mailboxes_read_back_as_as_many(mailboxes: list[tuple[str, str]]) -> None:
    import base64
    from email.utils import getaddresses

    raw = ", ".join(f"=?utf-8?b?{base64.b64encode(n.encode()).decode()}?= <{a}>"
                    for n, a in mailboxes)
    summary = summarize(block(f"From: {raw}"))
    assert getaddresses([summary.sender]) == [(n.strip(), a) for n, a in mailboxes]
    assert (summary.sender_name, summary.sender_address) == (mailboxes[0][0].strip(),
                                                             mailboxes[0][1])


# --- the fast summary against the careful one (issue 13) -----------------------------------------

def _careful_summary(data: bytes) -> HeaderSummary:
    """summarize() as it was before issue 13, the slow twin of the fast path: every field from
    the full field parser (_fields), every text cleaned by translating it, the date parsed into
    a datetime and formatted by it."""
    from unittest import mock

    from popctl import headers

    def careful_clean(text: str) -> str:
        return text.translate(headers._CONTROLS).strip()

    with mock.patch.object(headers, "_clean", careful_clean):
        fields = {name: headers._field_text(raw) for name, raw in _first_of_each(data).items()}
        sender, sender_cut = fields.get("from", (None, False))
        subject, subject_cut = fields.get("subject", (None, False))
        date, _date_cut = fields.get("date", (None, False))
        message_id, id_cut = fields.get("message-id", ("", False))
        when = parse_date(date)
        parsed = (headers._parse_sender(sender) if sender is not None
                  else headers._Sender("", "", None))
        message_id = headers._capped(careful_clean(message_id), id_cut)
        return HeaderSummary(
            sender=headers._capped(parsed.display, sender_cut),
            subject=(headers._capped(headers._unstructured(subject), subject_cut)
                     if subject is not None else ""),
            date=when.isoformat() if when is not None else None,
            message_id=message_id or None,
            sender_name=headers._capped(parsed.name),
            sender_address=(headers._capped(parsed.address) if parsed.address is not None
                            else None),
        )


# Pieces of field values: plain and 8-bit text, specials, addresses, encoded words (good, bad,
# in charsets that decode to surrogates or controls), dates in and out of range, controls.
_VALUE_PIECES = st.sampled_from([
    "Alice", "Alice Example", '"Garcia, Trent"', '"a\\"b"', "<a@example.org>", "a@example.org",
    " ", "  ", "\t", ",", ";", ":", "(c)", "<", ">", "@", '"', "\\", "=?", "?=", "é", "中",
    "\x1b[31m", "\x00", "\x7f", "\x85", "\u2028", "\ufeff", "\r", "=?utf-8?q?J=C3=B6rg?=",
    "=?UTF-8?B?8J+OiSBQYXJ0eSE=?=", "=?utf-7?q?+2AA-?=", "=?iso-8859-1?q?caf=E9?=",
    "=?x-unknown?q?x?=", "=?utf-8?b?!!!?=", "=?utf-8?q?=1B=9B?=", "=?punycode?q?abc?=",
    "Fri, 20 Nov 2026 14:03:00 +0100", "Thu, 29 Feb 2024 00:00:00 -0000", "30 Feb 2026 1:02 +0530",
    "Mon, 31 Apr 2026 23:59:60 +2400", "1 Jan 1000 00:00 -2359", " (CET)", "+0099", "Jan",
    "2026", "24:00", "<m.1@x.example>", "x" * 300,
])
_FIELD_NAMES = st.sampled_from([
    "From", "from", "FROM", "Subject", "SUBJECT", "Date", "date", "Message-ID", "Message-Id",
    "message-id", "From ", "Subject\t", "To", "Received", "X-From", "Fromage", "Date-X", "",
    " From", "\tSubject", "From x", "M\xe9ssage-ID",
])
_FIELDS = st.lists(st.tuples(
    _FIELD_NAMES, st.lists(_VALUE_PIECES, max_size=6),
    st.lists(st.sampled_from(["", " ", "\t", ":"]), max_size=1),  # a fold, or a colon-less line
), max_size=8)


def _header_block(fields: list[tuple[str, list[str], list[str]]], eol: bytes,
                  end: bytes) -> bytes:
    lines = []
    for name, pieces, fold in fields:
        value = "".join(pieces)
        if fold and fold[0] != ":" and len(value) > 2:
            value = value[:2] + "\n" + fold[0] + value[2:]  # a continuation line
        colon = "" if fold == [":"] else ":"
        lines.append(f"{name}{colon} {value}".encode("utf-8", "surrogatepass"))
    return eol.join(line.replace(b"\n", eol) for line in lines) + end


@settings(max_examples=200)
@given(_FIELDS, st.sampled_from([b"\r\n", b"\n", b"\r"]),
       st.sampled_from([b"", b"\r\n", b"\r\n\r\n", b"\n\n", b"\r\n\r\nFrom: after@blank.example"]))
def test_fast_summary_is_the_careful_summary_on_header_blocks(
        fields: list[tuple[str, list[str], list[str]]], eol: bytes, end: bytes) -> None:
    data = _header_block(fields, eol, end)
    assert summarize(data) == _careful_summary(data)


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_fast_summary_is_the_careful_summary_on_arbitrary_bytes(data: bytes) -> None:
    assert summarize(data) == _careful_summary(data)


@settings(max_examples=200)
@given(HEADER_PIECES, st.sampled_from([b"\n", b"\r\n", b"\r", b"\n\r"]), st.booleans())
def test_fast_summary_is_the_careful_summary_on_header_pieces(pieces: list[bytes], eol: bytes,
                                                               final_eol: bool) -> None:
    data = eol.join(pieces) + (eol if final_eol else b"")
    assert summarize(data) == _careful_summary(data)


@pytest.mark.parametrize("field", list(HOSTILE_FIELDS), ids=list(HOSTILE_FIELDS))
def test_fast_summary_is_the_careful_summary_on_hostile_fields(field: str) -> None:
    data = HOSTILE_FIELDS[field].encode() + b"\r\n\r\n"
    assert summarize(data) == _careful_summary(data)


def test_fast_summary_is_the_careful_summary_on_the_benchmark_mailbox() -> None:
    from benchmarks.mailboxes import realistic

    for message in realistic(300, big=()):
        head = message[:message.index(b"\r\n\r\n") + 4]
        assert summarize(head) == _careful_summary(head)
    for data in (BASIC, BASIC.replace(b"\r\n", b"\n"), b"", b"\r\n", b"\n",
                 b"Subject: " + b"\xc3\xa9" * MAX_FIELD_OCTETS + b"\r\n\r\n",
                 b"From: " + b"a" * 200_000 + b"\r\nSubject: " + b"b " * 100_000 + b"\r\n\r\n"):
        assert summarize(data) == _careful_summary(data)


@settings(max_examples=200)
@given(st.text(max_size=80))
def test_clean_skips_translating_only_what_translating_leaves_alone(text: str) -> None:
    from popctl import headers

    assert headers._clean(text) == text.translate(headers._CONTROLS).strip()


def test_every_character_clean_removes_is_unprintable() -> None:
    from popctl import headers

    assert not any(chr(c).isprintable() for c in headers._CONTROLS)


_MORE_DATE_PIECES = st.tuples(
    st.sampled_from(["", "Mon, ", "Sun,", "Foo, ", "\x1b", " "]),
    st.sampled_from(["1", "01", "09", "28", "29", "30", "31", "0", "00", "32", "99"]),
    st.sampled_from([" "]),
    st.sampled_from(["Jan", "Feb", "Apr", "Jun", "Sep", "Nov", "Dec", "jan", "Foo"]),
    st.sampled_from([" 2026 ", " 2024 ", " 2000 ", " 1900 ", " 2100 ", " 1000 ", " 9999 "]),
    st.sampled_from(["0:00", "9:59", "09:59", "23:59:59", "24:00", "23:60", "23:59:60", "19:00:00",
                     "20:00"]),
    st.sampled_from([" +0000", " -0000", " +0530", " -0530", " +0030", " -0030", " +2359",
                     " -2400", " +2300", " +0060", " +0099", " -1959", " GMT", "", " +0100 (CET)",
                     " +0000\x85"]),
)


@settings(max_examples=200)
@given(st.one_of(_MORE_DATE_PIECES.map("".join), st.text(max_size=40)))
def test_iso_date_fast_path_agrees_with_parse_date(text: str) -> None:
    from popctl.headers import _iso_date

    when = parse_date(text)
    assert _iso_date(text) == (when.isoformat() if when is not None else None)


@pytest.mark.parametrize("text", [
    "Sun, 29 Feb 2026 10:00:00 +0000", "Thu, 29 Feb 2024 10:00:00 +0000", "29 Feb 1900 0:00 +0000",
    "29 Feb 2000 0:00 +0000", "31 Apr 2026 0:00 +0000", "30 Apr 2026 0:00 +0000",
    "31 Dec 9999 23:59:59 +0000", "1 Jan 1000 00:00 -0000", "0 Jan 2026 00:00 +0000",
    "1 Jan 2026 24:00 +0000", "1 Jan 2026 23:60 +0000", "1 Jan 2026 23:59:60 +0000",
    "1 Jan 2026 7:05 -0030", "1 Jan 2026 7:05 +2359", "1 Jan 2026 7:05 -2400",
    "1 Jan 2026 7:05 +0060", "1 Jan 2026 7:05 +0199", " 1 Jan 2026 7:05 +0100 (CET) ",
])
def test_iso_date_fast_path_at_the_edges_of_its_ranges(text: str) -> None:
    from popctl.headers import _iso_date

    when = parse_date(text)
    assert _iso_date(text) == (when.isoformat() if when is not None else None)


@settings(max_examples=200)
@given(st.sampled_from(["", " ", "\t", "  ", "\r", "x", "\u3000"]), _WORDS,
       st.sampled_from(["", " ", "\t ", "\r", "y", "\n"]))
def test_one_encoded_word_fast_path_agrees_with_the_general_loop(before: str, words: list[bytes],
                                                                 after: str) -> None:
    from popctl.headers import _decode_words

    value = before + " ".join(w.decode("ascii") for w in words[:1]) + after
    assert decode_words(value) == _decode_words(value)


def test_only_dates_of_a_usual_length_are_remembered() -> None:
    # The ISO forms of recent Date values are cached by raw value; a long (hostile) one is
    # parsed as before and not kept, so the cache stays small whatever a server sends.
    from popctl import headers

    usual = b"Date: Thu, 26 Nov 2026 10:00:00 +0000"
    long = b"Date: Thu, 26 Nov 2026 10:00:00 +0000 (" + b"x" * 100 + b")"
    headers._cached_date.cache_clear()
    assert summarize(block(usual.decode())).date == "2026-11-26T10:00:00+00:00"
    assert summarize(block(usual.decode())).date == "2026-11-26T10:00:00+00:00"
    assert headers._cached_date.cache_info().hits == 1
    assert summarize(block(long.decode())).date == headers._iso_date(long[6:].decode())
    assert headers._cached_date.cache_info().currsize == 1
