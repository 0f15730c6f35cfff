"""Files that hold secrets: created private (0600) before a byte is written, and replaced
atomically, so no reader ever sees a half-written or world-readable secret."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class PasswordFile:
    """Passwords the stack made for itself (database roles), kept in one private JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, str]:
        return dict(json.loads(self.path.read_text())) if self.path.exists() else {}

    def get(self, name: str) -> str | None:
        return self.read().get(name)

    def ensure(self, name: str) -> str:
        """The password for ``name``, made (random, URL-safe) and saved the first time."""
        known = self.read()
        if name not in known:
            known[name] = secrets.token_urlsafe(24)
            write_private(self.path, json.dumps(known, indent=2) + "\n")
        return known[name]
