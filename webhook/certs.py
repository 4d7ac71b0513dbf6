"""Certificates (edge layer): a CA and serving certificates made with `cryptography`, as files.

Keys are ECDSA P-256 (what the Kubernetes API server and cert-manager handle everywhere, and
fast to make); key files are written 0600. The serving certificate carries the DNS and IP
subject alternative names it is asked for.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVING_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
DEV_NAMES = ("localhost", "127.0.0.1", "::1")


class CertError(ValueError):
    """A certificate problem, in one sentence that names the file and what to do."""


@dataclass(frozen=True, slots=True)
class CertPaths:
    ca_cert: Path
    cert: Path
    key: Path
    ca_key: Path | None = None


@dataclass(frozen=True, slots=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def generate_ca(common_name: str = "gpu-rdma-injector CA", days: int = CA_DAYS) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def generate_serving(
    ca: Issued, names: Sequence[str], days: int = SERVING_DAYS, *, client_auth: bool = False
) -> Issued:
    """A serving certificate signed by `ca`; IP SANs where a name is an IP address.

    With `client_auth` it is also usable as a client certificate (for mutual TLS).
    """
    if not names:
        raise CertError("a serving certificate needs at least one --dns-name")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc))
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH]
                + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [])
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert, key)


def write_file(path: Path, data: bytes, private: bool) -> None:
    """Write atomically (readers never see half a file); keys are 0600 from the start."""
    temporary = path.with_name(f".{path.name}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    descriptor = os.open(temporary, flags, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, 0o600 if private else 0o644)
    os.replace(temporary, path)


PAIR_LINK = "..data"


def write_pair(cert_file: Path, key_file: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """Replace a serving certificate and its key at once, as kubelet publishes a Secret volume.

    Both go into a fresh directory beside them; one rename points `..data` at it; the two paths
    are links through `..data`. A reader that resolves both links (ReloadingTLS) sees the old
    pair or the new one, never a new certificate with an old key. Both files must share a
    directory.
    """
    directory = cert_file.parent
    if key_file.parent != directory:
        raise CertError(f"{str(cert_file)!r} and {str(key_file)!r} must be in one directory")
    directory.mkdir(parents=True, exist_ok=True)
    version = Path(tempfile.mkdtemp(prefix="..pair-", dir=directory))
    write_file(version / cert_file.name, cert_pem, private=False)
    write_file(version / key_file.name, key_pem, private=True)
    link = directory / PAIR_LINK
    previous = os.readlink(link) if link.is_symlink() else None
    _replace_with_link(link, Path(version.name))
    for path in (cert_file, key_file):
        target = Path(PAIR_LINK) / path.name
        if not (path.is_symlink() and Path(os.readlink(path)) == target):
            _replace_with_link(path, target)
    if previous is not None and previous != version.name:
        shutil.rmtree(directory / previous, ignore_errors=True)


def _replace_with_link(path: Path, target: Path) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.link")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    os.replace(temporary, path)


def write_bundle(out_dir: Path, ca: Issued, serving: Issued) -> CertPaths:
    """ca.crt, ca.key, tls.crt, tls.key (the names Kubernetes TLS Secrets use) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(
        out_dir / "ca.crt", out_dir / "tls.crt", out_dir / "tls.key", out_dir / "ca.key"
    )
    assert paths.ca_key is not None
    write_file(paths.ca_cert, ca.cert_pem(), private=False)
    write_file(paths.ca_key, ca.key_pem(), private=True)
    write_file(paths.cert, serving.cert_pem(), private=False)
    write_file(paths.key, serving.key_pem(), private=True)
    return paths


def generate_bundle(out_dir: Path, names: Sequence[str], days: int = SERVING_DAYS) -> CertPaths:
    ca = generate_ca()
    return write_bundle(out_dir, ca, generate_serving(ca, names, days))


def needs_renewal(cert: x509.Certificate, names: Sequence[str] = ()) -> bool:
    """True when the certificate expires within RENEW_BEFORE or lacks one of `names`."""
    if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return True
    if not names:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    present = {str(value) for value in san.get_values_for_type(x509.DNSName)}
    present |= {str(value) for value in san.get_values_for_type(x509.IPAddress)}
    return not {str(_normalise(name)) for name in names} <= present


def _normalise(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def ensure_dev_certs(out_dir: Path) -> tuple[CertPaths, bool]:
    """Development certificates for localhost, reused while valid; (paths, whether made now)."""
    paths = CertPaths(
        out_dir / "ca.crt", out_dir / "tls.crt", out_dir / "tls.key", out_dir / "ca.key"
    )
    try:
        cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
        ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        if not needs_renewal(cert, DEV_NAMES) and paths.key.exists():
            return paths, False
    except (OSError, ValueError, TypeError):
        pass
    return generate_bundle(out_dir, DEV_NAMES), True


def load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as error:
        raise CertError(
            f"certificate file {str(path)!r} cannot be read ({error.strerror})"
        ) from None
    except ValueError:
        raise CertError(f"certificate file {str(path)!r} is not a PEM certificate") from None
