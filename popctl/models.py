"""Typed results of session calls. Field names are the JSON schema (see docs/JSON.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class TLSMode(StrEnum):
    IMPLICIT = "implicit"  # TLS from the first byte (port 995)
    STARTTLS = "starttls"  # plain connection upgraded with STLS (port 110)
    NONE = "none"  # no TLS at all

    @property
    def default_port(self) -> int:
        return 995 if self is TLSMode.IMPLICIT else 110


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect."""

    host: str
    port: int | None = None
    tls: TLSMode = TLSMode.IMPLICIT
    ca_file: str | None = None
    fingerprint: str | None = None  # SHA-256 of the server certificate; replaces CA checks
    insecure: bool = False  # accept any certificate: only for tests against self-signed servers
    connect_timeout: float = 15.0
    timeout: float = 60.0  # for each read once connected

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else self.tls.default_port


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str | None = field(default=None, repr=False)
    oauth2_token: str | None = field(default=None, repr=False)
    mechanism: str = "auto"  # auto, USER, APOP, or a SASL mechanism name
    allow_plaintext: bool = False  # send credentials over a connection without TLS


@dataclass(frozen=True, slots=True)
class TLSInfo:
    version: str
    cipher: str
    cert_sha256: str  # hex, lower case, no colons
    verified: bool  # whether the certificate chain and host name were checked


@dataclass(frozen=True)
class Capabilities:
    """CAPA's answer (RFC 2449): capability name -> its arguments.

    ``known`` is False when the server does not implement CAPA; callers then try commands rather
    than assume they are missing.
    """

    items: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    known: bool = True

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


@dataclass(frozen=True, slots=True)
class MailboxStat:
    count: int
    size: int  # octets


@dataclass(frozen=True, slots=True)
class MessageSize:
    number: int
    size: int  # octets, as the server reports them (some servers count LF, not CRLF)


@dataclass(frozen=True, slots=True)
class MessageUid:
    number: int
    uid: str


@dataclass(frozen=True, slots=True)
class MessageHeaders:
    number: int
    data: bytes = field(repr=False)  # the header block (plus any body lines asked for), raw
    truncated: bool = False  # the server sent more than we keep; the rest was read and dropped


@dataclass(frozen=True, slots=True)
class Retrieved:
    number: int
    octets: int  # bytes written to the sink
    deleted: bool = False  # marked for deletion (committed only by QUIT)
