"""SAM / MobileSAM checkpoint resolution: explicit path, cache dir, or a one-time download."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from .errors import WeightsError
from .registry import SegmenterSpec


def resolve_checkpoint(spec: SegmenterSpec, path: str | os.PathLike | None, cache_dir: Path, offline: bool,
                       timeout: float = 30.0) -> Path:
    """Find the checkpoint for ``spec``; download it into ``cache_dir`` once if allowed, else explain how to get it."""
    if path:
        if not Path(path).is_file():
            raise WeightsError(f"{spec.name} checkpoint not found at {str(path)!r} "
                               f"(from {spec.env_var} or the caller).")
        return Path(path)
    cached = cache_dir / spec.filename
    if cached.is_file():
        return cached
    hint = (
        f"Download {spec.filename} from {spec.url} and set {spec.env_var}=/path/to/{spec.filename} "
        f"(or put it in {cache_dir})."
    )
    if offline:
        raise WeightsError(f"{spec.name} weights are not on this machine and downloads are off. {hint}")
    try:
        _download(spec.url, cached, timeout)
    except OSError as error:
        raise WeightsError(f"Could not download {spec.name} weights ({error}). {hint}") from None
    return cached


def _download(url: str, target: Path, timeout: float) -> None:
    """Stream to a temp file with a progress bar, then move into place so a broken download never looks cached."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp, tqdm(
            total=total, unit="B", unit_scale=True, desc=target.name
        ) as bar:
            while chunk := response.read(1 << 20):
                tmp.write(chunk)
                bar.update(len(chunk))
    shutil.move(tmp.name, target)
