"""Whether a secret shows anywhere in what popctl printed: as typed, or base64-encoded."""

from __future__ import annotations

import base64


def secret_forms(secret: str) -> list[bytes]:
    """The secret as typed, and every base64 run that can only come from it: SASL carries
    it base64-encoded after a prefix of any length, so each of the three alignments counts."""
    raw = secret.encode()
    forms = [raw, raw.lower(), raw.upper()]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        start = 4 if offset else 0  # the first group mixes in the prefix
        forms.append(encoded[start:len(encoded) - 4])  # the last may be padded or continued
    return forms


def assert_hidden(text: str | bytes, *secrets: str) -> None:
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    for secret in secrets:
        for form in secret_forms(secret):
            assert form not in data, f"{form!r} found in output"
