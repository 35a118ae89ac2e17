"""Typed results of session calls. Field names are the JSON schema (see docs/JSON.md).

Immutable records are NamedTuples rather than frozen dataclasses: every command imports this
module, and a NamedTuple class is built several times faster than a dataclass (issue 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import NamedTuple, Protocol

from popctl import defaults


class Progress(Protocol):
    """Where work reports its progress (a bar on a terminal): ``expect`` says how much there
    is once that is known (after the listing), each call how much more was done. Items or
    octets, as the bar was asked for."""

    def expect(self, total: int) -> None: ...

    def __call__(self, amount: int, /) -> None: ...


class TLSMode(StrEnum):
    IMPLICIT = "implicit"  # TLS from the first byte (port 995)
    STARTTLS = "starttls"  # plain connection upgraded with STLS (port 110)
    NONE = "none"  # no TLS at all

    @property
    def default_port(self) -> int:
        return defaults.default_port(self.value)


class Endpoint(NamedTuple):
    """Where and how to connect."""

    host: str
    port: int | None = None
    tls: TLSMode = TLSMode.IMPLICIT
    ca_file: str | None = None
    fingerprint: str | None = None  # SHA-256 of the server certificate; replaces CA checks
    insecure: bool = False  # accept any certificate: only for tests against self-signed servers
    connect_timeout: float = defaults.TIMEOUT
    timeout: float = defaults.TIMEOUT  # read timeout, and each status line's deadline (session.py)
    session_timeout: float | None = None  # all waiting in a session; None: the default, 0: none

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else self.tls.default_port


class Credentials(NamedTuple):
    user: str
    password: str | None = None
    oauth2_token: str | None = None
    mechanism: str = "auto"  # auto, USER, APOP, or a SASL mechanism name
    allow_plaintext: bool = False  # send credentials over a connection without TLS

    def __repr__(self) -> str:  # never the secrets, not even in a traceback
        return (f"Credentials(user={self.user!r}, mechanism={self.mechanism!r}, "
                f"allow_plaintext={self.allow_plaintext!r})")


class TLSInfo(NamedTuple):
    version: str
    cipher: str
    cert_sha256: str  # hex, lower case, no colons
    verified: bool  # whether the certificate chain and host name were checked


class Capabilities:
    """CAPA's answer (RFC 2449): capability name -> its arguments.

    ``known`` is False when the server does not implement CAPA; callers then try commands rather
    than assume they are missing.
    """

    __slots__ = ("items", "known")

    def __init__(self, items: Mapping[str, tuple[str, ...]] | None = None, known: bool = True
                 ) -> None:
        self.items: Mapping[str, tuple[str, ...]] = items if items is not None else {}
        self.known = known

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Capabilities):
            return NotImplemented
        return (self.items, self.known) == (other.items, other.known)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Capabilities(items={self.items!r}, known={self.known!r})"

    @classmethod
    def parse(cls, lines: list[str]) -> Capabilities:
        items: dict[str, tuple[str, ...]] = {}
        for line in lines:
            words = line.split()
            if words:
                items[words[0].upper()] = tuple(words[1:])
        return cls(items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.upper() in self.items

    def args(self, name: str) -> tuple[str, ...]:
        return self.items.get(name.upper(), ())

    @property
    def sasl(self) -> tuple[str, ...]:
        return tuple(m.upper() for m in self.args("SASL"))

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self

    @property
    def implementation(self) -> str | None:
        args = self.args("IMPLEMENTATION")
        return " ".join(args) if args else None

    @property
    def login_delay(self) -> int | None:
        args = self.args("LOGIN-DELAY")
        return int(args[0]) if args and args[0].isdigit() else None

    @property
    def expire(self) -> str | None:
        args = self.args("EXPIRE")
        return args[0] if args else None

    def to_dict(self) -> dict[str, list[str]]:
        return {name: list(args) for name, args in self.items.items()}


class MailboxStat(NamedTuple):
    count: int  # type: ignore[assignment]  # shadows tuple.count(), which nothing here needs
    size: int  # octets


class MessageSize(NamedTuple):
    number: int
    size: int  # octets, as the server reports them (some servers count LF, not CRLF)


class MessageUid(NamedTuple):
    number: int
    uid: str


class MessageHeaders(NamedTuple):
    number: int
    data: bytes  # the header block (plus any body lines asked for), raw
    truncated: bool = False  # the server sent more than we keep; the rest was read and dropped


class Retrieved(NamedTuple):
    number: int
    octets: int  # bytes written to the sink
    deleted: bool = False  # marked for deletion (committed only by QUIT)
    short: bool = False  # fewer octets than LIST announced (truncated?): never deleted


class Lookup(NamedTuple):
    """The messages a command names by number, and what it will do with them first (built by
    query.Plan.lookup): when pipelining, ``login`` sends it with the credentials."""

    numbers: tuple[int, ...]
    uids: bool = True  # UIDL n beside LIST n
    # Then read and delete them (dele N --yes): TOP n 0 and DELE n go too, for the
    # ``headers(numbers, delete=numbers)`` that follows.
    delete: bool = False
