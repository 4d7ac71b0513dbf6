"""The server's TLS context (edge layer), reloading renewed certificate files in place.

TLS 1.2 and 1.3 only, forward-secret AEAD suites, optional client certificates (mutual TLS).
Renewed files (cert-manager, a rotated Secret, self-signed renewal) are swapped into the live
context without a restart; a pair published at once through links (`certs.write_pair`, kubelet's
Secret volumes) is read through the resolved links, so it is never seen half-replaced.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
from pathlib import Path

from webhook.certs import CertError, load_certificate

# TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are all modern.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class ReloadingTLS:
    """The server's SSLContext; `reload_if_changed()` swaps in renewed cert/key files in place.

    New connections use the new certificate at once; open ones keep theirs. A broken pair of
    files (e.g. half-way through a rotation) is reported and the last good one stays.
    """

    def __init__(self, cert_file: Path, key_file: Path, client_ca_file: Path | None = None) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_ciphers(TLS12_CIPHERS)
        self.context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        if client_ca_file is not None:
            try:
                self.context.load_verify_locations(cafile=str(client_ca_file))
            except (OSError, ssl.SSLError) as error:
                raise CertError(
                    f"client CA file {str(client_ca_file)!r} cannot be used ({error}); "
                    "give a PEM CA bundle"
                ) from None
            self.context.verify_mode = ssl.CERT_REQUIRED
        self._fingerprint = b""
        self._rejected = b""
        self.reloads = 0
        self.load()

    def _snapshot(self) -> tuple[Path, Path, bytes]:
        """The pair's real paths (links resolved, as `write_pair` and kubelet publish them) and
        a fingerprint of their bytes, from one consistent view; OSError if none can be had."""
        for _ in range(3):
            cert, key = self.cert_file.resolve(), self.key_file.resolve()
            fingerprint = hashlib.sha256(cert.read_bytes() + b"\0" + key.read_bytes()).digest()
            if (self.cert_file.resolve(), self.key_file.resolve()) == (cert, key):
                return cert, key, fingerprint
        raise OSError(f"{self.cert_file} and {self.key_file} keep changing")

    def _load(self, cert: Path, key: Path, fingerprint: bytes) -> None:
        # Try the pair on a scratch context first: a failed load can leave a live context
        # holding the new certificate with the old key.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key))
        self.context.load_cert_chain(str(cert), str(key))
        self._fingerprint = fingerprint

    def _mismatch(self, error: ssl.SSLError) -> CertError:
        return CertError(
            f"TLS certificate {str(self.cert_file)!r} and key {str(self.key_file)!r} cannot be "
            f"used together ({error.reason or error}); give a matching PEM pair"
        )

    def load(self) -> None:
        """Load the files now; CertError if they are missing, unreadable or do not match."""
        try:
            self._load(*self._snapshot())
        except ssl.SSLError as error:
            raise self._mismatch(error) from None
        except OSError as error:
            raise CertError(
                f"TLS file cannot be read ({error.strerror or error}: {error.filename}); check "
                "--tls-cert-file and --tls-key-file"
            ) from None

    def reload_if_changed(self) -> bool:
        """Reload when the files' content changed; True if a new certificate is now served.

        Files that cannot be read right now (half-way through a swap) are tried again on the
        next call; a pair that does not match is reported (CertError) once."""
        try:
            cert, key, fingerprint = self._snapshot()
            if fingerprint in (self._fingerprint, self._rejected):
                return False
            self._load(cert, key, fingerprint)
        except ssl.SSLError as error:  # before OSError, of which it is a kind
            self._rejected = fingerprint  # report a broken pair once, not on every poll
            raise self._mismatch(error) from None
        except OSError:
            return False
        self.reloads += 1
        return True

    def not_after(self) -> dt.datetime:
        return load_certificate(self.cert_file).not_valid_after_utc
