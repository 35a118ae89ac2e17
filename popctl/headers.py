"""Summaries of raw message headers (what ``TOP n 0`` returns) for listings and filters.

Input comes from an untrusted server: it may be truncated, use LF or CRLF, carry 8-bit junk,
malformed RFC 2047 encoded words, charsets that are not charsets, and fields built to be slow to
parse. Nothing here raises on bad input; every returned string is valid Unicode (no lone
surrogates, whatever a charset decodes to) free of control characters, so a hostile message can
neither inject terminal escapes into a listing nor make its output or the header cache
unwritable; every parser is linear and sees at most MAX_FIELD_OCTETS of a field, and a summary
keeps at most MAX_TEXT characters of each text, so time and memory are bounded per message.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final, NamedTuple

__all__ = ["MAX_FIELD_OCTETS", "MAX_TEXT", "HeaderSummary", "decode_words", "header_values",
           "parse_date", "summarize"]

# A field parser (RFC 2047 decoding, the From parser, the date parser) sees at most this many
# octets of a field's unfolded value; the rest is dropped before any parsing, so no parser's
# cost can grow with what a server sends. RFC 5322 caps a line at 998 octets and real From and
# Subject fields are one or two lines; the most verbose legitimate field is a Subject of
# Q-encoded words in a 3-octet UTF-8 script, about 11 octets a character, so MAX_TEXT
# characters of it take about 11 KiB: 16 KiB keeps every field that fits a summary whole.
MAX_FIELD_OCTETS: Final = 16 * 1024

# What a summary keeps of each text (From, its name and address, Subject, Message-ID), in
# characters; a longer text is cut to MAX_TEXT - 1 characters plus "…", as is one whose field
# was over MAX_FIELD_OCTETS. A listing shows 60 characters of a Subject and a line holds 998
# octets, so no real header loses anything, while what popctl holds and caches per message stays
# a few KB whatever the server claims (1,000 Subjects of 200 KB once took 613 MiB, issue 11).
MAX_TEXT: Final = 1000

_ELLIPSIS = "\u2026"


class HeaderSummary(NamedTuple):
    sender: str  # display form: "Name <addr>" or the address alone; "" when there is no From
    subject: str  # "" when there is no Subject
    date: str | None  # ISO 8601 with offset, None when missing or unparseable
    message_id: str | None
    sender_name: str  # the first From mailbox's display name, decoded; "" when it has none
    sender_address: str | None  # the first From mailbox's address; None when From has none


# HeaderSummary(...) without the NamedTuple's constructor, a Python function costing ~0.17 µs
# more: a listing summarizes every message.
_new_summary = functools.partial(tuple.__new__, HeaderSummary)


# An encoded word (RFC 2047 section 2): charset (optionally with an RFC 2231 "*language"), Q or B,
# encoded text without spaces or "?". Matched anywhere, not only between spaces, because mailers
# in the wild glue them to neighbouring text and every mail client decodes those too.
_ENCODED_WORD = re.compile(r"=\?([^?\s]++)\?([QqBb])\?([^?\s]*+)\?=")
# A value that is one encoded word and blanks, as most encoded Subjects and names are: decoded
# without the general loop (decode_words gives the same; a Hypothesis test compares).
_ONE_WORD = re.compile(r"([ \t]*+)=\?([^?\s]++)\?([QqBb])\?([^?\s]*+)\?=([ \t]*+)")
# Only whitespace between two encoded words: RFC 2047 section 6.2 says it is dropped.
_BLANK = re.compile(r"[ \t\r\n]*")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*")
# The two From forms nearly every message uses, parsed without email.utils (which is slow): a
# plain or quoted name then <addr>, or a bare address. Anything else goes to getaddresses.
# Possessive quantifiers throughout, and no two neighbours that can match the same character:
# the lazy name and the "[ \t]*" around it once backtracked over a run of white space, 21 s
# for a 99 KB From (issue 11); now one pass, whatever the input.
_SIMPLE_FROM = re.compile(
    r'[ \t]*+(?:"(?P<quoted>[^"\\]*+)"[ \t]*+|(?P<plain>[^"<>,;:@()\\]*+))'
    r'<(?P<addr>[^<>\s",;()]++)>[ \t]*+'
    r'|[ \t]*+(?P<bare>[^<>\s",;:()@]++@[^<>\s",;:()]++)[ \t]*+')
# RFC 5322 specials (3.2.3) but ".": a display name holding one is shown as a quoted-string, so
# that "Garcia, Trent" <t@x> does not read back as two addresses. "." is left bare: obs-phrase
# (4.1) allows it, every reader accepts "J. Smith <j@x>", and quoting initials is only noise.
# Two spaces in a row are quoted too: readers fold them into one in a bare phrase.
_NEEDS_QUOTES = re.compile(r'[()<>\[\]:;@\\,"]|  ')

# C0 and C1 controls and DEL: ESC (and the single-byte CSI U+009B) start terminal escape
# sequences. Tab, CR and LF become spaces: they separate words in an unfolded value. Lone
# surrogates (from UTF-7, say: "+2AA-" is U+D800) cannot be encoded in UTF-8, so they would make
# the output and the header cache unwritable: they become U+FFFD.
_CONTROLS: dict[int, str | None] = {c: None for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROLS.update({ord("\t"): " ", ord("\n"): " ", ord("\r"): " "})
_CONTROLS.update({c: "\ufffd" for c in range(0xD800, 0xE000)})
_SURROGATES = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    # isprintable() is False for every character _CONTROLS maps (Cc, Cs), and checking is
    # ten times cheaper than translating: most header text is printable.
    return text.strip() if text.isprintable() else text.translate(_CONTROLS).strip()


def _valid(text: str) -> str:
    """``text`` with any lone surrogate replaced by U+FFFD: always encodable as UTF-8."""
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


def _capped(text: str, cut: bool = False) -> str:
    """``text`` cut to MAX_TEXT characters, ending with "…" when it was cut here or before
    (``cut``: its field was longer than MAX_FIELD_OCTETS)."""
    if len(text) > MAX_TEXT or (cut and text):
        return text[:MAX_TEXT - 1].rstrip() + _ELLIPSIS
    return text


def _bytes_to_text(raw: bytes) -> str:
    """Header bytes as text: UTF-8 (RFC 6532) when valid, else Latin-1, which never fails and is
    right for the most common 8-bit legacy headers. A UTF-8 character cut in two at the end (by
    the MAX_FIELD_OCTETS cut) is dropped rather than turning the whole field into Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.reason == "unexpected end of data" and e.end == len(raw):
            try:
                return raw[:e.start].decode("utf-8")
            except UnicodeDecodeError:
                pass
        return raw.decode("latin-1")


def _word_bytes(encoding: str, text: str) -> bytes | None:
    """The octets of one encoded word's text, or None when they cannot be decoded."""
    if encoding in "Qq":
        # header=True turns "_" into a space (RFC 2047 4.2); a2b_qp leaves bad escapes as they are.
        return binascii.a2b_qp(text.encode("ascii", "replace"), header=True)
    # Strict about the alphabet (junk must show as the raw word, not silently vanish), lenient
    # about padding, which some mailers drop.
    data = text.rstrip("=")
    if not _BASE64.fullmatch(data) or len(data) % 4 == 1:
        return None
    return binascii.a2b_base64(data.encode("ascii") + b"=" * (-len(data) % 4))


# Python codecs that decode bytes to text but are no character set, so no mail may name them:
# escape decoders turn "\ud800" into a lone surrogate and "\x1b" into ESC; punycode (and idna,
# which calls it) is quadratic in its input (a 190 KB Subject took 3 s, issue 11); "charmap"
# without a map and "undefined" are placeholders; mbcs and oem are the Windows locale's.
_NOT_CHARSETS: Final = frozenset({
    "unicode-escape", "raw-unicode-escape", "punycode", "idna", "charmap", "undefined", "mbcs",
    "oem"})


@functools.lru_cache(maxsize=64)
def _charset(name: str) -> str | None:
    """A Python text codec name for a MIME charset, or None if there is none.

    Only the standard library's character encodings qualify: not the bytes-to-bytes and
    text-to-text transforms (base64, rot13: ``_is_text_encoding`` is False), not the codecs in
    _NOT_CHARSETS, and not codecs registered by other packages (codecs are plug-ins: what one
    does with hostile input is unknown).
    """
    name = name.partition("*")[0]  # RFC 2231 language suffix: "utf-8*en"
    try:
        info = codecs.lookup(name)
        module = getattr(info.incrementaldecoder, "__module__", None) or ""
        if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS \
                or not module.startswith("encodings."):
            return None
        b"a".decode(info.name, "ignore")  # "undefined"-like codecs fail even on ASCII
    except Exception:  # whatever a codec raises, it is no use to us
        return None
    return info.name


def decode_words(value: str) -> str:
    """Decode the RFC 2047 encoded words in ``value``; anything undecodable is kept as it was.

    Adjacent encoded words in the same charset are decoded together, since mailers split multibyte
    characters across words, and the whitespace between encoded words is dropped. The result is
    valid Unicode (a lone surrogate a charset decodes to becomes U+FFFD) if ``value`` is.
    """
    if "=?" not in value:
        return value
    one = _ONE_WORD.fullmatch(value)
    if one is not None:
        codec, word = _charset(one[2]), _word_bytes(one[3], one[4])
        if codec is None or word is None:
            return value
        try:
            return one[1] + _valid(word.decode(codec, "replace")) + one[5]
        except (LookupError, TypeError, ValueError):  # a codec that is not a text codec
            return value
    return _decode_words(value)


def _decode_words(value: str) -> str:
    """decode_words for any number of encoded words."""
    out: list[str] = []
    pos = 0
    # The pending run of adjacent encoded words: its codec, its octets (joined once, at the end:
    # concatenating word by word would be quadratic) and where its raw text starts.
    codec_of_run: str | None = None
    octets: list[bytes] = []
    run_start = 0

    def flush() -> None:
        nonlocal codec_of_run
        if codec_of_run is not None:
            try:
                out.append(_valid(b"".join(octets).decode(codec_of_run, "replace")))
            except (LookupError, TypeError, ValueError):  # a codec that is not a text codec
                out.append(value[run_start:pos])
            codec_of_run = None
            octets.clear()

    for match in _ENCODED_WORD.finditer(value):
        between = value[pos:match.start()]
        codec = _charset(match.group(1))
        word = _word_bytes(match.group(2), match.group(3))
        if codec is None or word is None:  # unknown charset or bad base64: keep the raw word
            flush()
            out.append(between + match.group(0))
        elif codec_of_run is not None and _BLANK.fullmatch(between):
            if codec != codec_of_run:  # the blank between words goes even across charsets
                flush()
                codec_of_run, run_start = codec, match.start()
            octets.append(word)
        else:
            flush()
            out.append(between)
            codec_of_run, run_start = codec, match.start()
            octets.append(word)
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def _fields(data: bytes) -> list[tuple[str, bytes]]:
    """The header fields as (lower-case name, unfolded raw value), in order.

    Parsing stops at the blank line ending the header; a line that is neither a field nor a
    continuation (an mbox "From " line, junk) is skipped rather than ending the header early.
    """
    fields: list[tuple[str, bytes]] = []
    name: str | None = None
    value: list[bytes] = []  # the lines of the field, joined at its end: += would be quadratic
    for line in data.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                value.append(line)  # unfolding removes only the line break (RFC 5322 2.2.3)
            continue
        if name is not None:
            fields.append((name, b"".join(value)))
            name = None
        if not line:
            break
        head, colon, rest = line.partition(b":")
        if colon:
            name = head.rstrip(b" \t").decode("ascii", "replace").lower()
            value = [rest]
    if name is not None:
        fields.append((name, b"".join(value)))
    return fields


# A field summarize() reads, at a line start (the block is searched with "\n" put before it), with
# its continuation lines; or the blank line ending the header, which takes the rest of the data
# with it, so no field after it is found. One pass over the block finds all four: Received
# chains and DKIM signatures are most of a header block, and a listing reads 1,000 of them. The
# lookahead only refuses the other lines quickly (a third of the search time). The value stops
# before a "\r" ending its last line, as unfolding drops it. The alternatives in the value
# cannot start on the same octet, and are possessive: each octet is looked at a bounded number
# of times.
_SUMMARY_FIELD = re.compile(
    rb"\n(?=[FfSsDdMm\r\n])"
    rb"(?:(from|subject|date|message-id)[ \t]*+:((?:[^\r\n]++|\r(?=[^\n])|\r?\n[ \t])*+)"
    rb"|\r?\n(?s:.*))",
    re.IGNORECASE)
# The first octet of each name, lower-cased: they differ.
_FROM, _SUBJECT, _DATE, _MESSAGE_ID = b"fsdm"


def _summary_fields(data: bytes) -> dict[int, bytes]:
    """The first From, Subject, Date and Message-ID of a header block, unfolded, by the first
    octet of their lower-case name: what _fields gives for them (a Hypothesis test compares)."""
    # findall, not finditer: a match object costs more than the field. In reverse, so that the
    # first of two fields of the same name is the one that stays. (The blank line ending the
    # header matches with an empty name.)
    found = {name[0] | 0x20: raw
             for name, raw in reversed(_SUMMARY_FIELD.findall(b"\n" + data)) if name}
    # A value holds a "\n" only where it was folded (most have none): one search over the few
    # octets of the values, where two over the block (two-octet searches, which CPython steps
    # slowly) were a tenth of a listing's summary.
    if b"\n" in b"".join(found.values()):
        for key, raw in found.items():
            if b"\n" in raw:
                found[key] = _unfolded(raw)
    return found


def _unfolded(raw: bytes) -> bytes:
    """A field value with its continuation lines, line breaks (CRLF or LF) removed (every "\n"
    in ``raw`` starts a continuation line)."""
    return raw.replace(b"\r\n", b"").replace(b"\n", b"")


def _unstructured(value: str) -> str:
    return _clean(decode_words(value))


def _mailbox(name: str, address: str) -> str:
    """One mailbox for people and for RFC 5322 readers: the address alone, or the name (quoted
    when it holds specials, with " and \\ escaped) then <address>."""
    if not name:
        return address
    if _NEEDS_QUOTES.search(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"


class _Sender(NamedTuple):
    display: str
    name: str
    address: str | None


_new_sender = functools.partial(tuple.__new__, _Sender)  # as _new_summary


def _parse_sender(value: str) -> _Sender:
    """A From value: its display form ("Name <addr>", names quoted as RFC 5322 needs, mailboxes
    joined by ", "), and the first mailbox's decoded name and address."""
    simple = _SIMPLE_FROM.fullmatch(value)
    if simple is not None:
        quoted, plain, addr, bare = simple.groups()  # in the pattern's order
        # _clean and _unstructured written out for the printable, unencoded values nearly
        # every From has: a call each was a third of this function's cost.
        if bare is not None:
            address = bare.strip() if bare.isprintable() else _clean(bare)
            return _new_sender((address, "", address))
        name = quoted if quoted is not None else plain
        name = name.strip() if "=?" not in name and name.isprintable() else _unstructured(name)
        address = addr.strip() if addr.isprintable() else _clean(addr)
        return _new_sender((_mailbox(name, address), name, address))
    if "@" not in value:  # a bare name or junk: getaddresses would mangle it into an "address"
        return _Sender(_unstructured(value), "", None)
    from email.utils import getaddresses  # ~10 ms to import: only for the unusual forms

    try:
        pairs = getaddresses([value])
    except Exception:  # email.utils is not hardened against every malformed input
        pairs = []
    mailboxes = [(_unstructured(name), _clean(address)) for name, address in pairs if address]
    mailboxes = [(name, address) for name, address in mailboxes if address]
    if not mailboxes:  # nothing parsed as an address (junk, group syntax): the decoded text
        return _Sender(_unstructured(value), "", None)
    return _Sender(", ".join(_mailbox(name, address) for name, address in mailboxes),
                   *mailboxes[0])


# The date form nearly every message uses (RFC 5322 3.3), read without email.utils: the same
# result as parsedate_to_datetime (a Hypothesis test compares them), anything else goes to it.
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_SIMPLE_DATE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ?)?([0-9]{1,2}) ([A-Z][a-z]{2}) ([1-9][0-9]{3}) "
    r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))? ([+-])([0-9]{2})([0-9]{2})(?: \([^()]*\))?")


def parse_date(value: str | None) -> datetime | None:
    """An RFC 5322 date (obsolete forms included) as an aware datetime, or None.

    A date without a usable zone ("-0000", or none at all) is taken as UTC.
    """
    if not value:
        return None
    value = _clean(value)
    simple = _SIMPLE_DATE.fullmatch(value)
    if simple is not None and simple[2] in _MONTHS:
        day, month, year, hour, minute, second, sign, zone_h, zone_m = simple.groups()
        offset = (int(zone_h) * 60 + int(zone_m)) * (-1 if sign == "-" else 1)
        try:
            return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute),
                            int(second or 0), tzinfo=timezone(timedelta(minutes=offset))
                            if offset else UTC)
        except ValueError:
            pass  # out of range: the general parser decides
    return _parse_date_general(value)


def _parse_date_general(value: str) -> datetime | None:
    from email.utils import parsedate_to_datetime  # ~10 ms to import: only when needed

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def _field_text(raw: bytes) -> tuple[str, bool]:
    """A raw field value as text, cut to MAX_FIELD_OCTETS first; and whether it was cut."""
    cut = len(raw) > MAX_FIELD_OCTETS
    return _bytes_to_text(raw[:MAX_FIELD_OCTETS] if cut else raw), cut


def _summary_text(raw: bytes) -> tuple[str, bool]:
    """``_field_text(raw)`` with a plain UTF-8 decode first: what nearly every field needs."""
    cut = len(raw) > MAX_FIELD_OCTETS
    try:
        return (raw.decode() if not cut else _field_text(raw)[0]), cut
    except UnicodeDecodeError:
        return _bytes_to_text(raw), cut


def summarize(data: bytes, *, message_id: bool = True) -> HeaderSummary:
    """Sender, subject, date and Message-ID of a raw header block; never raises.
    ``message_id=False``: the summary's ``message_id`` is None (listings never show it)."""
    # _capped(text, cut) is written out as "if cut or len(text) > MAX_TEXT" and _field_text's
    # UTF-8 attempt as a plain decode: what nearly every field needs, at a third of the cost.
    fields = _summary_fields(data)
    sender, sender_name, sender_address = "", "", None
    raw = fields.get(_FROM)
    if raw is not None:
        text, cut = _summary_text(raw) if not raw.isascii() or len(raw) > MAX_FIELD_OCTETS \
            else (raw.decode("ascii"), False)
        sender, sender_name, sender_address = _parse_sender(text)
        if cut or len(sender) > MAX_TEXT:
            sender = _capped(sender, cut)
        if len(sender_name) > MAX_TEXT:
            sender_name = _capped(sender_name)
        if sender_address is not None and len(sender_address) > MAX_TEXT:
            sender_address = _capped(sender_address)
    subject = ""
    raw = fields.get(_SUBJECT)
    if raw is not None:
        text, cut = _summary_text(raw) if not raw.isascii() or len(raw) > MAX_FIELD_OCTETS \
            else (raw.decode("ascii"), False)
        subject = text.strip() if "=?" not in text and text.isprintable() \
            else _unstructured(text)
        if cut or len(subject) > MAX_TEXT:
            subject = _capped(subject, cut)
    date = None
    raw = fields.get(_DATE)
    if raw is not None:
        date = _date_of(raw)
    raw = fields.get(_MESSAGE_ID) if message_id else None
    if raw is not None:
        text, cut = _field_text(raw)
        return HeaderSummary(sender, subject, date, _capped(_clean(text), cut) or None,
                             sender_name, sender_address)
    return _new_summary((sender, subject, date, None, sender_name, sender_address))


# Month name: its number and its last day, both as two digits. February says 28: the 29th is
# left to parse_date, which knows leap years.
_ISO_MONTHS: Final = {name: (f"{number:02}", last) for name, number, last in zip(
    _MONTHS, _MONTHS.values(), ("31", "28", "31", "30", "31", "30", "31", "31", "30", "31", "30",
                                "31"), strict=True)}


# Messages of one sending share their Date field: the ISO forms of the last ones seen are
# remembered, by the raw value (a pure function of it). Only values of a usual length: a cache
# of 1,024 hostile 16 KiB dates would hold 16 MiB.
_DATE_CACHED_OCTETS: Final = 80


def _date_of(raw: bytes) -> str | None:
    """``_iso_date`` of a raw Date value."""
    if len(raw) > _DATE_CACHED_OCTETS:
        return _iso_date(_field_text(raw)[0])
    return _cached_date(raw)


@functools.lru_cache(maxsize=1024)
def _cached_date(raw: bytes) -> str | None:
    return _iso_date(_field_text(raw)[0])


def _iso_date(value: str) -> str | None:
    """``parse_date(value)`` in ISO 8601, or None. A date of the usual form whose fields are
    plainly in range is written out from its own digits (two-digit strings compare as their
    numbers do): building the datetime and formatting it cost five times as much. Anything
    else goes to parse_date, so the result is the same (a Hypothesis test compares)."""
    simple = _SIMPLE_DATE.fullmatch(value.strip()) if value.isprintable() else None
    if simple is not None:
        day, month, year, hour, minute, second, sign, zone_h, zone_m = simple.groups()
        known = _ISO_MONTHS.get(month)
        if len(day) == 1:
            day = "0" + day
        if len(hour) == 1:
            hour = "0" + hour
        if second is None:
            second = "00"
        if known is not None and "01" <= day <= known[1] and hour < "24" and minute < "60" \
                and second < "60" and zone_h < "24" and zone_m < "60":
            zone = "+00:00" if zone_h == zone_m == "00" else f"{sign}{zone_h}:{zone_m}"
            return f"{year}-{known[0]}-{day}T{hour}:{minute}:{second}{zone}"
    when = parse_date(value)
    return when.isoformat() if when is not None else None


def header_values(data: bytes, name: str) -> list[str]:
    """The decoded value of every ``name`` field in a raw header block (case-insensitive); each
    value is decoded from its first MAX_FIELD_OCTETS only (not capped to MAX_TEXT: this is
    what ``--header`` filters match, never stored)."""
    wanted = name.strip().lower()
    return [_unstructured(_field_text(raw)[0]) for field_name, raw in _fields(data)
            if field_name == wanted]


def every_header(head: bytes) -> list[tuple[str, str]]:
    """Every field of a raw header block, in order, as ``(name, value)`` with the value decoded
    by the ``email`` package (encoded-words, folding collapsed to single spaces), for ``top
    --format json``. A field that package cannot parse (it raises on some malformed ones, such
    as ``Message-ID: <>``) is decoded here instead, so it cannot lose the rest; every value is
    valid Unicode whatever its charset claims."""
    from email import policy
    from email.parser import BytesParser

    message = BytesParser(policy=policy.default).parsebytes(head + b"\r\n\r\n",
                                                           headersonly=True)
    fields = []
    for name, raw in message.raw_items():
        try:
            text = str(policy.default.header_fetch_parse(name, raw))
        except Exception:  # the email package's parsers raise on hostile input
            text = decode_words(raw)
        fields.append((_valid(name), _valid(" ".join(text.split()))))
    return fields
