"""Deterministic generated mail for the benchmarks: realistic mailboxes and scale mailboxes.

``realistic(n)`` gives a mailbox like a real inbox: header blocks of 0.6-2 kB (Received chains,
DKIM signatures, encoded subjects), text bodies with a median message size of about 5 kB
(log-normal), some lines starting with a dot (dot-stuffing), and a few multi-megabyte messages
with base64 attachments. ``tiny(n)`` gives small messages for the 100,000-message mailbox.
"""

from __future__ import annotations

import base64
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

MIB = 1024 * 1024

_WORD_TEXT = ("the of and to in is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when if "
         "so no will more what about up out who into them time can only some could new also "
         "mailbox server message header delivery invoice meeting report quarterly attached "
         "please review schedule tomorrow regards thanks update project release notes")
WORDS = _WORD_TEXT.split()
SENDERS = [("Alice Example", "alice@example.org"), ("Bob Builder", "bob@builder.example"),
           ("Jürgen Müller", "juergen@example.de"), ("", "noreply@shop.example.com"),
           ("Newsletter", "news@lists.example.net"), ("Chloé Martin", "chloe@example.fr"),
           ("GitHub", "notifications@github.example"), ("李雷", "lilei@example.cn")]
SUBJECTS = ["Meeting tomorrow", "Re: quarterly report", "Your invoice #{n}", "Grüße aus München",
            "[list] Release notes {n}", "Fwd: photos", "Café, au lait", "Build #{n} failed",
            "Offre spéciale {n}", "会议通知 {n}"]


def _encoded(text: str) -> str:
    if text.isascii():
        return text
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


def _header(rng: random.Random, n: int, when: datetime, extra: list[str]) -> bytes:
    name, addr = rng.choice(SENDERS)
    subject = rng.choice(SUBJECTS).format(n=n)
    lines = [f"Return-Path: <{addr}>"]
    for hop in range(rng.randint(2, 4)):
        lines.append(f"Received: from mx{hop}.example.net (mx{hop}.example.net [192.0.2.{hop + 1}])"
                     f"\r\n\tby mail.example.org (Postfix) with ESMTPS id {rng.getrandbits(40):X}"
                     f"\r\n\tfor <me@example.org>; {format_datetime(when)}")
    if rng.random() < 0.5:
        signature = base64.b64encode(rng.randbytes(180)).decode()
        lines.append("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; "
                     "s=sel1;\r\n\th=from:to:subject:date;\r\n\tb=" + signature[:70]
                     + "\r\n\t" + signature[70:])
    sender = f"{_encoded(name)} <{addr}>" if name else addr
    lines += [f"From: {sender}", "To: Me <me@example.org>", f"Subject: {_encoded(subject)}",
              f"Date: {format_datetime(when)}",
              f"Message-ID: <{n}.{rng.getrandbits(48):x}@example.net>", "MIME-Version: 1.0",
              *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _text(rng: random.Random, size: int) -> bytes:
    """About ``size`` octets of CRLF text lines; some start with a dot."""
    out: list[bytes] = []
    total = 0
    while total < size:
        words = rng.choices(WORDS, k=rng.randint(4, 12))
        line = " ".join(words)
        if rng.random() < 0.02:
            line = "." + line  # stuffed on the wire
        raw = line.encode() + b"\r\n"
        out.append(raw)
        total += len(raw)
    return b"".join(out)


def _attachment(rng: random.Random, size: int) -> bytes:
    encoded = base64.encodebytes(rng.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n"
            b"--b1\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=\"data.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b1--\r\n")


def realistic(count: int = 1000, *, big: tuple[float, ...] = (2.0, 2.0, 2.5),
              seed: int = 1939) -> Iterator[bytes]:
    """``count`` messages: log-normal sizes around 5 kB, and ``big`` (MiB) spread among them."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    big_at = {round((i + 1) * count / (len(big) + 1)): size for i, size in enumerate(big)}
    for n in range(1, count + 1):
        when = start + timedelta(minutes=37 * n)
        if n in big_at:
            head = _header(rng, n, when, ['Content-Type: multipart/mixed; boundary="b1"'])
            yield head + _attachment(rng, int(big_at[n] * MIB))
            continue
        size = int(min(400_000, max(900, rng.lognormvariate(math.log(5000), 0.9))))
        head = _header(rng, n, when, ["Content-Type: text/plain; charset=utf-8"])
        yield head + _text(rng, max(40, size - len(head)))


def tiny(count: int, *, seed: int = 110) -> Iterator[bytes]:
    """Small messages (about 300 octets) for the scale mailboxes."""
    rng = random.Random(seed)
    for n in range(1, count + 1):
        yield (b"From: Sender %d <s%d@example.org>\r\nTo: me@example.org\r\n"
               b"Subject: message %d\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
               b"Message-ID: <%d.%x@example.org>\r\n\r\nbody %d\r\n"
               % (n, n % 97, n, n, rng.getrandbits(32), n))


def huge(size: int, *, seed: int = 200) -> bytes:
    """One message of about ``size`` octets (a base64 attachment)."""
    rng = random.Random(seed)
    head = _header(rng, 1, datetime(2026, 1, 1, tzinfo=UTC),
                   ['Content-Type: multipart/mixed; boundary="b1"'])
    # randbytes of 150 MB is slow-ish; repeat a 1 MiB random block instead (still base64 text)
    block = base64.encodebytes(rng.randbytes(3 * MIB // 4)).replace(b"\n", b"\r\n")
    body = block * -(-(size - len(head)) // len(block))  # at least ``size`` octets in all
    return head + b"--b1\r\nContent-Type: application/octet-stream\r\n" \
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body + b"--b1--\r\n"
