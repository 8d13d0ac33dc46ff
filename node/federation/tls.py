"""TLS for the federation listener: a self-signed certificate made at `croft init`.

Peers on the LAN pin the server's signing key (not the certificate), and the
server-server spec lets servers skip certificate checks for IP literals, so a
self-signed certificate is enough to start; a real one can be configured.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
from pathlib import Path

from node.ids import ServerName

CERT_VALIDITY = dt.timedelta(days=3650)


def create_self_signed_certificate(server_name: str, cert_path: Path, key_path: Path) -> None:
    """Write a self-signed ECDSA P-256 certificate for the server name's host."""
    # Imported here, not at the top: `croft run` only loads the certificate (ssl), and
    # cryptography.x509 costs ~8 MB of resident memory and ~20 ms of start-up.
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    host = ServerName.parse(server_name).host
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])])
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        san = x509.DNSName(host)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_ssl_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_path), str(key_path))
    return ctx


_client_context: ssl.SSLContext | None = None


def client_ssl_context() -> ssl.SSLContext:
    """The verified TLS context for Croft's outbound HTTPS (push gateways; servers
    found by federation discovery): the system CA bundle, or SSL_CERT_FILE /
    SSL_CERT_DIR. Made on first use (loading the bundle takes a few milliseconds and
    ~2 MiB), then shared. Pass it explicitly: aiohttp's own default context is built
    without CAs when `croft run` imports it (node/cli.py)."""
    global _client_context
    if _client_context is None:
        _client_context = ssl.create_default_context()
    return _client_context
