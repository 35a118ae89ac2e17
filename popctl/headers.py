"""Summaries of raw message headers (what ``TOP n 0`` returns) for listings and filters.

Input comes from an untrusted server: it may be truncated, use LF or CRLF, carry 8-bit junk and
malformed RFC 2047 encoded words. Nothing here raises on bad input, and every returned string is
free of control characters, so a hostile message cannot inject terminal escapes into a listing.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import NamedTuple

__all__ = ["HeaderSummary", "decode_words", "header_values", "parse_date", "summarize"]


class HeaderSummary(NamedTuple):
    sender: str  # display form: "Name <addr>" or the address alone; "" when there is no From
    subject: str  # "" when there is no Subject
    date: str | None  # ISO 8601 with offset, None when missing or unparseable
    message_id: str | None


# An encoded word (RFC 2047 section 2): charset (optionally with an RFC 2231 "*language"), Q or B,
# encoded text without spaces or "?". Matched anywhere, not only between spaces, because mailers
# in the wild glue them to neighbouring text and every mail client decodes those too.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
# Only whitespace between two encoded words: RFC 2047 section 6.2 says it is dropped.
_BLANK = re.compile(r"[ \t\r\n]*")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*")
# The two From forms nearly every message uses, parsed without email.utils (which is slow): a
# plain or quoted name then <addr>, or a bare address. Anything else goes to getaddresses.
_SIMPLE_FROM = re.compile(
    r'[ \t]*(?:"(?P<quoted>[^"\\]*)"|(?P<plain>[^"<>,;:@()\\]*?))'
    r'[ \t]*<(?P<addr>[^<>\s",;()]+)>[ \t]*'
    r'|[ \t]*(?P<bare>[^<>\s",;:()]+@[^<>\s",;:()]+)[ \t]*')

# C0 and C1 controls and DEL: ESC (and the single-byte CSI U+009B) start terminal escape
# sequences. Tab, CR and LF become spaces: they separate words in an unfolded value.
_CONTROLS: dict[int, str | None] = {c: None for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROLS.update({ord("\t"): " ", ord("\n"): " ", ord("\r"): " "})


def _clean(text: str) -> str:
    return text.translate(_CONTROLS).strip()


def _bytes_to_text(raw: bytes) -> str:
    """Header bytes as text: UTF-8 (RFC 6532) when valid, else Latin-1, which never fails and is
    right for the most common 8-bit legacy headers."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
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


@functools.lru_cache(maxsize=64)
def _charset(name: str) -> str | None:
    """A Python text codec name for a MIME charset, or None if there is none."""
    name = name.partition("*")[0]  # RFC 2231 language suffix: "utf-8*en"
    try:
        codec = codecs.lookup(name).name
        # LookupError for bytes-to-bytes codecs such as "base64"; "undefined" always fails.
        b"a".decode(codec, "ignore")
    except Exception:  # codecs are plug-ins: whatever one raises, it is no use to us
        return None
    return codec


def decode_words(value: str) -> str:
    """Decode the RFC 2047 encoded words in ``value``; anything undecodable is kept as it was.

    Adjacent encoded words in the same charset are decoded together, since mailers split multibyte
    characters across words, and the whitespace between encoded words is dropped.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pos = 0
    # Pending run of adjacent encoded words: (codec, octets, raw text of the run).
    run: tuple[str, bytes, str] | None = None

    def flush() -> None:
        nonlocal run
        if run is not None:
            codec, octets, raw = run
            try:
                out.append(octets.decode(codec, "replace"))
            except (LookupError, TypeError, ValueError):  # a codec that is not a text codec
                out.append(raw)
            run = None

    for match in _ENCODED_WORD.finditer(value):
        between = value[pos:match.start()]
        pos = match.end()
        codec = _charset(match.group(1))
        octets = _word_bytes(match.group(2), match.group(3))
        if codec is None or octets is None:  # unknown charset or bad base64: keep the raw word
            flush()
            out.append(between + match.group(0))
        elif run is not None and _BLANK.fullmatch(between):
            if run[0] == codec:
                run = (codec, run[1] + octets, run[2] + between + match.group(0))
            else:
                flush()
                run = (codec, octets, match.group(0))
        else:
            flush()
            out.append(between)
            run = (codec, octets, match.group(0))
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
    value = b""
    for line in data.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                value += line  # unfolding removes only the line break (RFC 5322 2.2.3)
            continue
        if name is not None:
            fields.append((name, value))
            name = None
        if not line:
            break
        head, colon, rest = line.partition(b":")
        if colon:
            name = head.rstrip(b" \t").decode("ascii", "replace").lower()
            value = rest
    if name is not None:
        fields.append((name, value))
    return fields


_SUMMARY_NAMES = ("from", "subject", "date", "message-id")


def _summary_fields(data: bytes) -> dict[str, bytes]:
    """The first From, Subject, Date and Message-ID of a header block, unfolded, by name: what
    _fields gives for them, found with bytes.find instead of splitting every line (Received
    chains and DKIM signatures are most of a header block, and a listing reads 1,000 of them)."""
    if data[:1] == b"\n" or data[:2] == b"\r\n":
        return {}
    ends = [i for i in (data.find(b"\n\n"), data.find(b"\n\r\n")) if i >= 0]
    block = data[:min(ends) + 1] if ends else data
    lower = b"\n" + block.lower()  # lower[i] is block[i - 1]: a name found at a line start
    found: dict[str, bytes] = {}
    for name in _SUMMARY_NAMES:
        key = b"\n" + name.encode()
        at = lower.find(key)
        while at >= 0:
            colon = at + len(key)
            while lower[colon:colon + 1] in (b" ", b"\t"):
                colon += 1
            if lower[colon:colon + 1] == b":":
                found[name] = _unfolded(block, colon)
                break
            at = lower.find(key, colon)
    return found


def _unfolded(block: bytes, start: int) -> bytes:
    """The value starting at ``start`` with its continuation lines, line breaks removed."""
    parts = []
    while True:
        end = block.find(b"\n", start)
        line = block[start:] if end < 0 else block[start:end]
        parts.append(line[:-1] if line.endswith(b"\r") else line)
        if end < 0 or block[end + 1:end + 2] not in (b" ", b"\t"):
            return b"".join(parts)
        start = end + 1


def _unstructured(value: str) -> str:
    return _clean(decode_words(value))


def _display_sender(value: str) -> str:
    """A From value for people: "Name <addr>" (name decoded) or the address alone."""
    simple = _SIMPLE_FROM.fullmatch(value)
    if simple is not None:
        if simple["bare"] is not None:
            return _clean(simple["bare"])
        name = _unstructured(simple["quoted"] if simple["quoted"] is not None else simple["plain"])
        address = _clean(simple["addr"])
        return f"{name} <{address}>" if name else address
    if "@" not in value:  # a bare name or junk: getaddresses would mangle it into an "address"
        return _unstructured(value)
    from email.utils import getaddresses  # ~10 ms to import: only for the unusual forms

    try:
        pairs = getaddresses([value])
    except Exception:  # email.utils is not hardened against every malformed input
        pairs = []
    shown = []
    for name, address in pairs:
        if not address:
            continue
        name = _unstructured(name)
        address = _clean(address)
        shown.append(f"{name} <{address}>" if name else address)
    # Nothing parsed as an address (junk, group syntax, a bare name): show the decoded text.
    return ", ".join(shown) if shown else _unstructured(value)


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


def summarize(data: bytes) -> HeaderSummary:
    """Sender, subject, date and Message-ID of a raw header block; never raises."""
    fields = {name: _bytes_to_text(raw) for name, raw in _summary_fields(data).items()}
    sender = fields.get("from")
    subject = fields.get("subject")
    when = parse_date(fields.get("date"))
    message_id = _clean(fields.get("message-id") or "")
    return HeaderSummary(
        sender=_display_sender(sender) if sender is not None else "",
        subject=_unstructured(subject) if subject is not None else "",
        date=when.isoformat() if when is not None else None,
        message_id=message_id or None,
    )


def header_values(data: bytes, name: str) -> list[str]:
    """The decoded value of every ``name`` field in a raw header block (case-insensitive)."""
    wanted = name.strip().lower()
    return [_unstructured(_bytes_to_text(raw)) for field_name, raw in _fields(data)
            if field_name == wanted]
