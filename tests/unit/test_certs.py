"""Certificates made with cryptography (webhook.certs), and the reloading TLS context
(webhook.tls)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from webhook.certs import (
    CertError,
    ensure_dev_certs,
    generate_bundle,
    generate_ca,
    generate_serving,
    load_certificate,
    needs_renewal,
    write_pair,
)
from webhook.tls import ReloadingTLS


def test_bundle_has_sans_key_modes_and_chain(tmp_path: Path) -> None:
    paths = generate_bundle(tmp_path, ["webhook.ns.svc", "10.0.0.1"], days=30)
    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["webhook.ns.svc"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.1")]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.key_size >= 256  # type: ignore[union-attr]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=29) < lifetime < dt.timedelta(days=31)
    for key in (paths.key, paths.ca_key):
        assert key is not None
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_dev_certs_are_reused_while_valid(tmp_path: Path) -> None:
    first, made = ensure_dev_certs(tmp_path)
    assert made
    content = first.cert.read_bytes()
    second, made_again = ensure_dev_certs(tmp_path)
    assert not made_again
    assert second.cert.read_bytes() == content


def test_dev_certs_are_remade_when_broken(tmp_path: Path) -> None:
    paths, _ = ensure_dev_certs(tmp_path)
    paths.cert.write_text("garbage")
    _, made = ensure_dev_certs(tmp_path)
    assert made


def test_needs_renewal() -> None:
    ca = generate_ca()
    assert needs_renewal(generate_serving(ca, ["a"], days=10).cert)
    fresh = generate_serving(ca, ["a"], days=90).cert
    assert not needs_renewal(fresh, ["a"])
    assert needs_renewal(fresh, ["a", "b"])


def test_reloading_tls_swaps_in_new_files(tmp_path: Path) -> None:
    paths = generate_bundle(tmp_path, ["localhost"])
    tls = ReloadingTLS(paths.cert, paths.key)
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert not tls.reload_if_changed()
    generate_bundle(tmp_path, ["localhost"])
    assert tls.reload_if_changed()
    assert tls.reloads == 1


def test_mismatched_pair_is_refused_and_reported_once(tmp_path: Path) -> None:
    paths = generate_bundle(tmp_path / "a", ["localhost"])
    other = generate_bundle(tmp_path / "b", ["localhost"])
    tls = ReloadingTLS(paths.cert, paths.key)
    paths.key.write_bytes(other.key.read_bytes())
    with pytest.raises(CertError, match="cannot be used together"):
        tls.reload_if_changed()
    assert not tls.reload_if_changed()  # the same broken pair is not reported again


def test_missing_files_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CertError, match="check --tls-cert-file and --tls-key-file"):
        ReloadingTLS(tmp_path / "no.crt", tmp_path / "no.key")


def test_a_pair_replaced_while_it_is_reloaded_is_never_seen_mismatched(tmp_path: Path) -> None:
    """The self-signed writer replaces cert and key at once; the reloader, polling as fast as
    it can meanwhile, only ever loads whole pairs: never a CertError (a "reload rejected")."""
    ca = generate_ca()
    pairs = [generate_serving(ca, ["localhost"]) for _ in range(4)]
    cert_file, key_file = tmp_path / "tls" / "tls.crt", tmp_path / "tls" / "tls.key"
    write_pair(cert_file, key_file, pairs[0].cert_pem(), pairs[0].key_pem())
    tls = ReloadingTLS(cert_file, key_file)
    done = threading.Event()

    def writer() -> None:
        for turn in range(300):
            pair = pairs[turn % len(pairs)]
            write_pair(cert_file, key_file, pair.cert_pem(), pair.key_pem())
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reloads = 0
    try:
        while not done.is_set():
            reloads += tls.reload_if_changed()  # a mismatched pair would raise CertError
    finally:
        thread.join()
    tls.reload_if_changed()
    assert reloads > 0
    assert load_certificate(cert_file).serial_number == pairs[299 % 4].cert.serial_number
    assert sorted(p.name for p in (tmp_path / "tls").iterdir() if p.name.startswith("..pair-")) == [
        os.readlink(tmp_path / "tls" / "..data")
    ]  # old versions are removed
    assert (key_file.resolve().stat().st_mode & 0o777) == 0o600


def test_a_pair_must_share_a_directory(tmp_path: Path) -> None:
    ca = generate_ca()
    pair = generate_serving(ca, ["localhost"])
    with pytest.raises(CertError, match="must be in one directory"):
        write_pair(tmp_path / "a" / "tls.crt", tmp_path / "b" / "tls.key", b"", pair.key_pem())
