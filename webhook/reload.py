"""Hot reload (edge layer): the live policy, swapped when its file changes, the last good kept.

A ConfigMap update reaches a mounted file by an atomic symlink swap, so the file is compared by
content, not by modification time. A file that cannot be read (deleted, permissions) is reported
once, as a rejected reload, until it can be read again. Fields in `restart_only` (the running
process's caches are keyed by them) are never changed by a reload: a new file that changes one
is rejected with a sentence that says to restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from webhook.policy import Policy, PolicyError, default_policy, load_policy, parse_policy

ReloadResult = Literal["unchanged", "applied", "rejected"]


@dataclass(slots=True)
class PolicyStore:
    """The policy in force; `current` is read by every admission, `check()` by the reload loop."""

    current: Policy
    path: Path | None = None
    last_error: str | None = None
    restart_only: tuple[str, ...] = ()
    """Policy fields a reload must not change (e.g. resource_name_annotations in cluster mode)."""
    _digest: bytes = b""
    _unreadable: bool = False

    @classmethod
    def load(cls, path: Path | None) -> PolicyStore:
        """The policy file `path`, or the embedded default policy; PolicyError if unusable."""
        return cls.from_file(path) if path else cls(default_policy())

    @classmethod
    def from_file(cls, path: Path) -> PolicyStore:
        """Load the file now; PolicyError if it is unusable (the server must not start on it)."""
        store = cls(load_policy(path), path)
        store._digest = hashlib.sha256(path.read_bytes()).digest()
        return store

    def check(self) -> ReloadResult:
        """Reload the file if its content changed; a bad new file leaves the current policy."""
        if self.path is None:
            return "unchanged"
        try:
            content = self.path.read_bytes()
        except OSError as error:
            if self._unreadable:
                return "unchanged"  # reported when it became unreadable
            self._unreadable, self._digest = True, b""
            return self._reject(
                f"policy file {str(self.path)!r} cannot be read ({error.strerror or error}); "
                "keeping the last good policy until it can"
            )
        self._unreadable = False
        digest = hashlib.sha256(content).digest()
        if digest == self._digest:
            return "unchanged"
        self._digest = digest
        try:
            policy = parse_policy(content.decode("utf-8"), str(self.path))
        except UnicodeDecodeError:
            return self._reject(f"policy file {str(self.path)!r} is not UTF-8 text")
        except PolicyError as error:
            return self._reject(str(error))
        for field in self.restart_only:
            if getattr(policy, field) != getattr(self.current, field):
                name = Policy.model_fields[field].alias or field
                return self._reject(
                    f"policy file {str(self.path)!r}: {name} cannot change while the webhook "
                    "runs (its caches in cluster mode are built from it); restart the webhook "
                    "to apply it"
                )
        self.current = policy
        self.last_error = None
        return "applied"

    def _reject(self, message: str) -> ReloadResult:
        self.last_error = message
        return "rejected"
