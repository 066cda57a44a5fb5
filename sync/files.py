"""Small state files: written so that a crash never leaves half of one (a temp file beside it, then a rename)."""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (parents created); readers see the old content or the new, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


class JsonStore:
    """A small dict kept in one JSON file (the last prompt per project, retries per task); an unreadable file counts
    as empty and is said so in the log, never fatal."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        return self._read().get(key, default)

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            values = self._read()
            if values.get(key) != value:
                values[key] = value
                write_atomic(self.path, json.dumps(values, indent=1))

    def delete(self, key: str) -> None:
        with self._lock:
            values = self._read()
            if values.pop(key, None) is not None:
                write_atomic(self.path, json.dumps(values, indent=1))

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            log.warning("State file %s is unreadable (%s); starting empty.", self.path, error)
            return {}
