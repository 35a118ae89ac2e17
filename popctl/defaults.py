"""Every default and every fixed set of choices popctl has, in one place every layer reads.

Standard library only and cheap to import: the command line reads it at start-up (its option
choices and help), the configuration file checks values against it, the session layer takes its
ports and timeouts from it. A value written here is never written again anywhere else.
"""

from __future__ import annotations

from typing import Final

# --- output ---------------------------------------------------------------------------------------

FORMATS: Final = ("table", "json", "ndjson", "csv")
FORMAT: Final = "table"
# The fields --columns may choose (docs/JSON.md); from_name and from_address are in JSON and NDJSON
# by default, in a table or CSV only when chosen. --sort takes the SORT_FIELDS a listing has.
LIST_COLUMNS: Final = ("number", "size", "uid", "from", "subject", "date", "from_name",
                       "from_address", "date_utc", "date_epoch")
SIZES_ONLY_COLUMNS: Final = ("number", "size")
UIDL_COLUMNS: Final = ("number", "uid")
DELE_COLUMNS: Final = (*LIST_COLUMNS, "deleted")
SORT_FIELDS: Final = ("number", "size", "date", "from", "subject", "uid")

# --- connecting ---------------------------------------------------------------------------------

# TLSMode's values, in models.py (tests/test_startup.py checks they agree).
TLS_MODES: Final = ("implicit", "starttls", "none")
TLS: Final = "implicit"
IMPLICIT_TLS_PORT: Final = 995  # pop3s (RFC 8314)
PLAIN_PORT: Final = 110  # pop3, upgraded with STLS or not at all

# Seconds to wait for the connection and then for each reply. Long enough for a slow provider's
# first TLS handshake and for a LIST of a large mailbox; short enough that a cron job stuck on a
# dead server gives up in well under a minute.
TIMEOUT: Final = 30.0
TIMEOUT_RANGE: Final = (0.1, 3600)  # what --timeout and an account's timeout accept
# The default bound on a whole session's waiting: an hour, or 120 read timeouts if longer. Cron
# jobs end; a mailbox that needs more than an hour of transfer in one run gets an error that says
# how to raise it.
SESSION_TIMEOUT: Final = 3600.0
SESSION_TIMEOUT_READS: Final = 120
# `account add --probe` tries several ports on a server nobody has used yet: never wait longer.
PROBE_TIMEOUT: Final = 10.0

# --- authentication -----------------------------------------------------------------------------

MECHANISM: Final = "auto"
MECHANISMS: Final = ("auto", "USER", "APOP", "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256",
                     "XOAUTH2", "OAUTHBEARER")


def default_port(tls: str | None) -> int:
    """The port of a TLS mode (``None``: the default mode)."""
    return IMPLICIT_TLS_PORT if (tls or TLS) == "implicit" else PLAIN_PORT


# How `openssl x509 -fingerprint -sha256` starts its line ("SHA256 Fingerprint=" before 3.0),
# in lower case.
OPENSSL_FINGERPRINT_PREFIX: Final = "sha256 fingerprint="


def normalize_fingerprint(text: str) -> str:
    """``"AB:CD:..."``, ``"sha256:abcd..."``, ``"sha256 Fingerprint=AB:CD:..."`` (the line of
    ``openssl x509 -noout -fingerprint -sha256``, which a rejected certificate's error names) ->
    64 lower-case hex digits; ValueError otherwise.

    Here rather than in the transport: the configuration file and the command line check a
    fingerprint before anything connects, and neither may import ssl to do it.
    """
    text = text.strip().lower()
    for prefix in OPENSSL_FINGERPRINT_PREFIX, "sha256:":
        text = text.removeprefix(prefix)
    hexdigits = text.replace(":", "").replace(" ", "")
    if len(hexdigits) != 64 or any(c not in "0123456789abcdef" for c in hexdigits):
        raise ValueError("a SHA-256 fingerprint is 64 hex digits (colons allowed)")
    return hexdigits
