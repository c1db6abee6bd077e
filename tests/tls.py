"""A throw-away certificate authority for TLS tests: a CA, a broker and a client certificate.

Real certificates made with ``cryptography`` at test time (nothing committed, nothing
that expires between runs), used through the ``tls_files`` fixture of tests/conftest.py.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: Names the broker's certificate is valid for: where the local brokers listen.
BROKER_HOSTS = ("127.0.0.1", "localhost")
_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA, the broker's certificate and key (and both in one file, as Kafka
    takes them), a client's certificate and key."""

    ca: Path
    broker_cert: Path
    broker_key: Path
    broker_keystore: Path
    client_cert: Path
    client_key: Path


def write_certificates(folder: Path, *, ca_name: str = "intentstream test CA") -> TlsFiles:
    """Create a CA and two certificates it signs, as PEM files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(ca_name, ca_name, ca_key, ca_key.public_key(), ca=True)
    files = {"ca": _write(folder / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))}
    for role, hosts in (("broker", BROKER_HOSTS), ("client", ())):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(f"intentstream {role}", ca_name, ca_key, key.public_key(), hosts=hosts)
        files[f"{role}_cert"] = _write(
            folder / f"{role}.pem", cert.public_bytes(serialization.Encoding.PEM)
        )
        files[f"{role}_key"] = _write(
            folder / f"{role}.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    keystore = files["broker_key"].read_bytes() + files["broker_cert"].read_bytes()
    files["broker_keystore"] = _write(folder / "broker-keystore.pem", keystore)
    return TlsFiles(**files)


def _certificate(
    subject: str,
    issuer: str,
    signer: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    *,
    ca: bool = False,
    hosts: tuple[str, ...] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = dict.fromkeys(_KEY_USAGES, False) | {"key_cert_sign": True, "crl_sign": True}
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        ).add_extension(x509.KeyUsage(**usage), critical=True)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    if hosts:
        names = [_host_name(host) for host in hosts]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
