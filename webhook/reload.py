"""Hot reload (edge layer): the live policy, swapped when its file changes, the last good kept.

A ConfigMap update reaches a mounted file by an atomic symlink swap, so the file is compared by
content, not by modification time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from webhook.policy import Policy, PolicyError, load_policy

ReloadResult = Literal["unchanged", "applied", "rejected"]


@dataclass(slots=True)
class PolicyStore:
    """The policy in force; `current` is read by every admission, `check()` by the reload loop."""

    current: Policy
    path: Path | None = None
    last_error: str | None = None
    _digest: bytes = b""

    @classmethod
    def from_file(cls, path: Path) -> PolicyStore:
        """Load the file now; PolicyError if it is unusable (the server must not start on it)."""
        store = cls(load_policy(path), path)
        store._digest = store._read_digest() or b""
        return store

    def _read_digest(self) -> bytes | None:
        assert self.path is not None
        try:
            return hashlib.sha256(self.path.read_bytes()).digest()
        except OSError:
            return None

    def check(self) -> ReloadResult:
        """Reload the file if its content changed; a bad new file leaves the current policy."""
        if self.path is None:
            return "unchanged"
        digest = self._read_digest()
        if digest is None or digest == self._digest:
            return "unchanged"
        self._digest = digest
        try:
            self.current = load_policy(self.path)
        except PolicyError as error:
            self.last_error = str(error)
            return "rejected"
        self.last_error = None
        return "applied"
