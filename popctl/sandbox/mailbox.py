"""A deterministic sample mailbox of realistic RFC 5322 messages for the sandbox POP3 server.

The content depends only on the seed and on the current UTC day: Date headers are spread over the
~60 days before today's midnight, so age filters ("older than 30 days") select about half of it.
"""

from __future__ import annotations

import base64
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

MESSAGE_COUNT = 50
SPAN_DAYS = 60
# Median body size aimed at ~5 kB: typical of real person-to-person and notification mail.
_BODY_MEDIAN = 4500
_BODY_MIN, _BODY_MAX = 250, 40_000
# Encoded size (MiB) of the attachments of the three messages over 1 MB: big enough that
# size filters and --killsize style options have something to bite on.
_BIG_ATTACHMENT_MIB = (1.2, 2.5, 4.0)
_WRAP = 72
# RFC 2047: an encoded word is at most 75 characters.
_MAX_ENCODED_WORD = 75
# Deliberately longer than RFC 5322's 998-octet line limit (and poplib's 2048): clients must cope.
_LONG_LINE_OCTETS = 3500
_TO = "Sandbox User <sandbox@popctl.example>"
_MX = "mx.popctl.example"


@dataclass(frozen=True)
class _Sender:
    name: str  # display name; encoded with RFC 2047 when not ASCII
    address: str
    utc_offset_hours: int
    subjects: tuple[str, ...]  # "{n}" becomes a random number
    name_encoding: str = "Q"


_SENDERS = {
    "alice": _Sender("Alice Example", "alice@example.com", 0, (
        "Weekly status report", "Re: Lunch on Thursday?", "Meeting notes: roadmap planning",
        "Team offsite agenda", "Quarterly numbers (draft, please do not forward)",
    )),
    "bob": _Sender("Bob O'Neill", "bob.oneill@example.org", -5, (
        "Re: Re: budget spreadsheet", "Fwd: conference travel details",
        "Re: question about the API",
    )),
    "juergen": _Sender("Jürgen Müller", "juergen.mueller@muenchen.example", 1, (
        "Invitation: design review", "Re: Weekly status report",
    )),
    "yuki": _Sender("田中 由紀", "yuki.tanaka@tokyo.example", 9, (
        "Re: question about the API", "Slides for the Tokyo meetup",
    ), name_encoding="B"),
    "zoe": _Sender("Zoë Durand", "zoe@paris.example", 1, (
        "Re: Lunch on Thursday?", "Invitation: design review",
    )),
    "carol": _Sender("Carol Smith, PhD", "carol.smith@university.example", -7, (
        "Re: paper draft, comments inline", "Seminar schedule for next term",
    )),
    "soren": _Sender("Søren Kierkegaard", "soren@copenhagen.example", 1, (
        "Re: Re: budget spreadsheet", "Either/or: the hiring decision",
    )),
    "github": _Sender("GitHub", "notifications@github.example", 0, (
        "[popctl] New issue: crash when the mailbox is empty (#{n})",
        "[popctl] Build failed: main #{n}", "Re: [popctl] Fix TOP parsing (PR #{n})",
    )),
    "billing": _Sender("Acme Billing", "billing@acme.example", -8, (
        "Your invoice #{n} is available", "Your subscription renews soon",
    )),
    "parcels": _Sender("Parcel Tracker", "no-reply@parcels.example", 0, (
        "Your package is on its way", "Delivery attempted: parcel {n}",
    )),
    "weekly": _Sender("Python Weekly", "newsletter@pyweekly.example", 0, (
        "Python Weekly - Issue {n}",
    )),
    "devlist": _Sender("dev-list", "dev-list@lists.example.org", 0, (
        "[dev-list] Proposal: drop support for old interpreters",
        "Re: [dev-list] Release checklist",
    )),
    "it": _Sender("IT Operations", "it-ops@example.com", 0, (
        "Security alert: new sign-in from Linux", "Server maintenance window tonight",
    )),
}  # fmt: skip

# (sender, subject, RFC 2047 encoding) for subjects that cannot be sent as ASCII.
_ENCODED_SUBJECTS = (
    ("juergen", "Grüße aus München", "Q"),
    ("yuki", "会議の議事録（第3四半期）", "B"),  # noqa: RUF001
    ("parcels", "🎉 Your order has shipped!", "B"),
    ("juergen", "Einladung: Jahresabschlussfeier im Büro – bitte bis Freitag zusagen", "Q"),  # noqa: RUF001
    ("zoe", "Re: Résumé für die Stelle als Entwicklerin", "Q"),
    ("soren", "Ølpriser stiger: prognose for 4. kvartal ⛽", "B"),
    ("soren", "Spændende nyheder fra København", "Q"),
)

# The subject and sender of each message that exercises an edge case.
_SPECIALS = {
    "big0": ("carol", "Scanned contracts (PDF)"),
    "big1": ("zoe", "Holiday photos"),
    "big2": ("it", "Database backup for March"),
    "dotted": ("bob", "Re: shell startup files"),
    "long-line": ("billing", "Your data export is ready"),
    "eight-bit": ("juergen", "Protokoll der Sitzung – Entwurf"),  # noqa: RUF001
}

_VOCABULARY = (
    "the a an and or but if then because while although so that this those these we you they "
    "it our your their project release meeting agenda budget report draft server mailbox client "
    "message invoice payment order package delivery schedule team review design proposal issue "
    "change update version support question answer idea plan week month quarter year today "
    "tomorrow morning afternoon evening please thanks regards attached document spreadsheet "
    "numbers results performance latency network storage backup migration deadline customer "
    "feedback feature bug fix test build deploy production staging config password account "
    "travel hotel flight conference talk slides notes summary decision action item follow up "
    "should could would will can may might must need want think know see look find make take "
    "send receive read write check confirm cancel move keep drop add remove improve reduce "
    "quickly carefully probably definitely already still again soon later before after "
    "important urgent minor major small large new old first last next previous other same"
)
_WORDS = tuple(_VOCABULARY.split())


def sample_mailbox(seed: int = 1, *, reference: datetime | None = None) -> list[bytes]:
    """Return ~50 realistic CRLF messages, oldest first, deterministic for a seed and a day.

    ``reference`` (default: today's midnight UTC) is the instant the Date headers count back from.
    """
    if reference is None:
        reference = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(seed)
    dates = _spread_dates(rng, reference, MESSAGE_COUNT)
    specials = _special_slots(rng, MESSAGE_COUNT)
    return [
        _build(rng, index, dates[index], specials.get(index, "plain"))
        for index in range(MESSAGE_COUNT)
    ]


def _spread_dates(rng: random.Random, reference: datetime, count: int) -> list[datetime]:
    """Evenly spread, jittered instants over the SPAN_DAYS before ``reference``, oldest first."""
    step = SPAN_DAYS / count
    return [
        reference - timedelta(days=step * (count - i) - rng.uniform(0.05, 0.9) * step)
        for i in range(count)
    ]


def _special_slots(rng: random.Random, count: int) -> dict[int, str]:
    """Choose which mailbox positions hold the messages that exercise edge cases."""
    kinds = [*_SPECIALS, *(f"encoded{i}" for i in range(len(_ENCODED_SUBJECTS)))]
    slots = rng.sample(range(count), len(kinds))
    return dict(zip(slots, kinds, strict=True))


# --- assembling one message ------------------------------------------------------------------


def _build(rng: random.Random, index: int, date: datetime, kind: str) -> bytes:
    sender, subject = _sender_and_subject(rng, kind)
    headers = _common_headers(rng, index, sender, date, subject)
    if kind.startswith("big"):
        headers_extra, body = _big_body(rng, int(kind[3:]))
    elif kind == "eight-bit":
        headers_extra, body = _eight_bit_body(rng, sender)
    else:
        text = _paragraphs(rng, _body_size(rng))
        if kind == "dotted":
            text = _DOTTED_TEXT + text
        elif kind == "long-line":
            text += _long_line(rng)
        headers_extra = [
            "Content-Type: text/plain; charset=us-ascii",
            "Content-Transfer-Encoding: 7bit",
        ]
        body = text + _signature(sender)
    message = "\r\n".join([*headers, *headers_extra, "", body])
    # Only the eight-bit message (declared 8bit) may carry non-ASCII octets.
    return message.encode("utf-8" if kind == "eight-bit" else "ascii")


def _sender_and_subject(rng: random.Random, kind: str) -> tuple[_Sender, str]:
    """The sender and the Subject header value (RFC 2047 encoded when not ASCII)."""
    if kind.startswith("encoded"):
        key, text, encoding = _ENCODED_SUBJECTS[int(kind[7:])]
        prefix = "Re: " if text.startswith("Re: ") else ""
        return _SENDERS[key], prefix + _encode_header_text(text.removeprefix(prefix), encoding)
    if kind in _SPECIALS:
        key, text = _SPECIALS[kind]
        subject = text if text.isascii() else _encode_header_text(text, "Q")
        return _SENDERS[key], subject
    sender = rng.choice(list(_SENDERS.values()))
    return sender, rng.choice(sender.subjects).format(n=rng.randrange(100, 9999))


def _common_headers(
    rng: random.Random, index: int, sender: _Sender, date: datetime, subject: str
) -> list[str]:
    local = date.astimezone(timezone(timedelta(hours=sender.utc_offset_hours)))
    domain = sender.address.partition("@")[2]
    headers = [
        # A folded Received header, as every real MTA writes it.
        f"Received: from mail.{domain} (mail.{domain} [192.0.2.{10 + index}])\r\n"
        f"\tby {_MX} with ESMTPS id {rng.getrandbits(48):012X}\r\n"
        f"\tfor <sandbox@popctl.example>; {format_datetime(date.astimezone(UTC))}",
        f"From: {_address(sender)}",
        f"To: {_TO}",
    ]
    if rng.random() < 0.2:
        headers.append(
            "Cc: Alice Example <alice@example.com>, Bob O'Neill <bob.oneill@example.org>,\r\n"
            " Carol Smith <carol.smith@university.example>"
        )
    headers += [
        f"Subject: {subject}",
        f"Date: {format_datetime(local)}",
        f"Message-ID: <{rng.getrandbits(64):016x}.{index}@{domain}>",
    ]
    if subject.startswith("Re:"):
        headers.append(
            f"References: <{rng.getrandbits(64):016x}@{domain}>\r\n"
            f" <{rng.getrandbits(64):016x}@{domain}>"
        )
    if "lists." in domain:
        headers.append(f"List-Id: Developers <dev.{domain}>")
    headers.append("MIME-Version: 1.0")
    return headers


def _address(sender: _Sender) -> str:
    if sender.name.isascii():
        needs_quotes = any(c in sender.name for c in ',.;:@<>()[]"')  # RFC 5322 specials
        name = f'"{sender.name}"' if needs_quotes else sender.name
    else:
        name = _encode_header_text(sender.name, sender.name_encoding)
    return f"{name} <{sender.address}>"


# --- RFC 2047 encoded words ------------------------------------------------------------------


def _encode_header_text(text: str, encoding: str) -> str:
    """Encode ``text`` as UTF-8 encoded words, folded onto continuation lines when long."""
    words: list[str] = []
    chunk = ""
    for char in text:  # split between characters, never inside a UTF-8 sequence
        if chunk and len(_encoded_word(chunk + char, encoding)) > _MAX_ENCODED_WORD:
            words.append(_encoded_word(chunk, encoding))
            chunk = ""
        chunk += char
    words.append(_encoded_word(chunk, encoding))
    return "\r\n ".join(words)


def _encoded_word(text: str, encoding: str) -> str:
    data = text.encode("utf-8")
    if encoding == "B":
        payload = base64.b64encode(data).decode("ascii")
    else:
        payload = "".join(_q_char(byte) for byte in data)
    return f"=?UTF-8?{encoding}?{payload}?="


def _q_char(byte: int) -> str:
    char = chr(byte)
    if char == " ":
        return "_"
    # Only the characters RFC 2047 allows in a Q word inside a phrase (display names).
    if char.isascii() and (char.isalnum() or char in "!*+-/"):
        return char
    return f"={byte:02X}"


# --- bodies ----------------------------------------------------------------------------------


def _body_size(rng: random.Random) -> int:
    size = rng.lognormvariate(math.log(_BODY_MEDIAN), 0.8)
    return int(min(max(size, _BODY_MIN), _BODY_MAX))


def _paragraphs(rng: random.Random, size: int) -> str:
    """Wrapped English-like paragraphs of about ``size`` octets, CRLF line endings."""
    paragraphs: list[str] = []
    total = 0
    while total < size:
        paragraph = "\r\n".join(_wrap(_sentences(rng, rng.randint(2, 6))))
        if rng.random() < 0.15:  # a quoted reply, as in real threads
            paragraph = "\r\n".join("> " + line for line in paragraph.split("\r\n"))
        paragraphs.append(paragraph)
        total += len(paragraph) + 4
    return "\r\n\r\n".join(paragraphs) + "\r\n"


def _sentences(rng: random.Random, count: int) -> Iterator[str]:
    for _ in range(count):
        words = rng.choices(_WORDS, k=rng.randint(6, 18))
        yield " ".join(words).capitalize() + rng.choice(".....?!")


def _wrap(sentences: Iterator[str]) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in " ".join(sentences).split():
        if line and len(line) + 1 + len(word) > _WRAP:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return lines


def _signature(sender: _Sender) -> str:
    name = sender.name if sender.name.isascii() else sender.address.partition("@")[0]
    return f"\r\n-- \r\n{name}\r\n"


# Lines that begin with "." must be dot-stuffed by the server; a lone "." must not end the reply.
_DOTTED_TEXT = (
    "Here is what I found about the startup files:\r\n"
    "\r\n"
    ".profile is read by login shells, .bashrc by interactive ones.\r\n"
    "..and this line starts with two dots.\r\n"
    ".\r\n"
    "The lone dot above is part of the message, not the end of it.\r\n"
    "\r\n"
)


def _long_line(rng: random.Random) -> str:
    query = "&".join(f"k{i}={rng.getrandbits(40):010x}" for i in range(_LONG_LINE_OCTETS // 16))
    url = f"https://exports.example.com/download?{query}"
    return f"\r\nDownload link (valid for 7 days):\r\n{url[:_LONG_LINE_OCTETS]}\r\n"


def _eight_bit_body(rng: random.Random, sender: _Sender) -> tuple[list[str], str]:
    """The one message whose body is raw UTF-8, declared 8bit."""
    text = (
        "Hallo zusammen,\r\n\r\n"
        "anbei das Protokoll unserer Sitzung. Die nächsten Schritte:\r\n\r\n"
        " • Überarbeitung der Präsentation bis Donnerstag\r\n"
        " • Rückmeldung zum Budget (größere Änderungen bitte vorab)\r\n"
        " • Straßenfest am Wochenende – wer hilft beim Aufbau?\r\n\r\n"  # noqa: RUF001
        "Viele Grüße\r\n"
    )
    headers = ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    return headers, text + _paragraphs(rng, 1500) + _signature(sender)


def _big_body(rng: random.Random, which: int) -> tuple[list[str], str]:
    """A multipart/mixed body with a base64 attachment of pseudo-random bytes."""
    filename, mime_type = (
        ("contracts.pdf", "application/pdf"),
        ("IMG_2041.jpg", "image/jpeg"),
        ("backup-2024-03.sql.gz", "application/gzip"),
    )[which]
    encoded_size = int(_BIG_ATTACHMENT_MIB[which] * 1024 * 1024)
    # base64 lines carry 57 octets as 76 characters + CRLF (RFC 2045).
    encoded = base64.b64encode(rng.randbytes(encoded_size * 57 // 78)).decode("ascii")
    payload = "\r\n".join([encoded[i : i + 76] for i in range(0, len(encoded), 76)]) + "\r\n"
    boundary = f"=_sandbox_{rng.getrandbits(64):016x}"
    headers = [f'Content-Type: multipart/mixed;\r\n boundary="{boundary}"']
    body = (
        "This is a multi-part message in MIME format.\r\n"
        f"\r\n--{boundary}\r\n"
        'Content-Type: text/plain; charset="us-ascii"\r\n'
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
        f"Please find {filename} attached.\r\n"
        f"\r\n--{boundary}\r\n"
        f'Content-Type: {mime_type}; name="{filename}"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="{filename}"\r\n'
        "\r\n"
        f"{payload}"
        f"\r\n--{boundary}--\r\n"
    )
    return headers, body
