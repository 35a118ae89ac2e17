"""The sandbox's TLS: a self-signed certificate made per server (with cryptography, a declared
dependency of popctl) and the server-side context for STLS."""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Certificate:
    cert_pem: bytes
    key_pem: bytes
    sha256: str  # hex digest of the DER encoding


def self_signed_certificate() -> Certificate:
    """A throwaway EC P-256 certificate for localhost, 127.0.0.1 and ::1, valid for one day.

    It is an end-entity certificate (CA:FALSE): trusting it cannot make anything else trusted.
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as e:
        raise RuntimeError("the sandbox needs 'cryptography' for TLS; use tls=False") from e

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "popctl sandbox")])
    now = datetime.now(UTC)
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        # Python 3.13's VERIFY_X509_STRICT wants an AKID even on a self-signed certificate.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Certificate(
        cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
        key_pem=key_pem,
        sha256=certificate.fingerprint(hashes.SHA256()).hex(),
    )


def server_tls_context(certificate: Certificate, directory: str) -> tuple[ssl.SSLContext, str]:
    """A server context for ``certificate``; returns it and the path of the PEM to trust."""
    cert_file = os.path.join(directory, "sandbox-cert.pem")
    key_file = os.path.join(directory, "sandbox-key.pem")
    with open(cert_file, "wb") as f:
        f.write(certificate.cert_pem)
    # The directory is private (mkdtemp: 0700); the key exists on disk only until loaded.
    with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(certificate.key_pem)
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
    finally:
        os.remove(key_file)
    return context, cert_file


