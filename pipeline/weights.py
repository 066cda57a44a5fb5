"""Weights: the detector from a local directory or the Hugging Face cache, else one download from the Hub after a
quick check that the Hub answers; SAM / MobileSAM checkpoints from an explicit path, the cache dir, or a one-time
download. A machine that cannot reach the Hub fails in seconds with the fix, not after minutes of retries."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tqdm.auto import tqdm

from .errors import WeightsError
from .registry import DEFAULT_DETECTOR, DETECTORS, SegmenterSpec

T = TypeVar("T")


# Seconds to wait for the Hugging Face Hub (or a checkpoint host) before calling it unreachable.
HUB_TIMEOUT = 8.0
OFFLINE_HINT = (
    "Offline, set GROUNDLABEL_OFFLINE=1 (or HF_HUB_OFFLINE=1) and pass local weights; to try the app "
    "with no weights at all, run python app.py --demo."
)


def load_pretrained(model_id: str, offline: bool, *loaders: Callable[..., T]) -> list[T]:
    """``loader.from_pretrained(model_id)`` for each loader (a processor, a model class): from a local directory or
    the Hugging Face cache first, with no network at all; else, unless ``offline``, downloaded once, after
    ``check_hub`` showed that the Hub answers. ``WeightsError`` with a one-line reason and the fix otherwise."""
    local = Path(model_id).exists() or model_id.startswith(("/", ".", "~")) or "\\" in model_id  # a path
    if local or _in_hub_cache(model_id):
        try:
            return [loader.from_pretrained(model_id, local_files_only=True) for loader in loaders]
        except (OSError, ValueError) as error:
            if local or offline:
                raise WeightsError(_not_loadable(model_id, error, offline)) from None
    elif offline:
        raise WeightsError(_not_loadable(model_id, None, offline))
    check_hub(model_id)
    try:
        return [loader.from_pretrained(model_id) for loader in loaders]
    except (OSError, ValueError) as error:
        raise WeightsError(_not_loadable(model_id, error, offline)) from None


def _in_hub_cache(model_id: str) -> bool:
    """Whether the Hugging Face cache holds ``model_id``'s config: a file lookup, no network (transformers' own
    ``local_files_only`` load of a model that is not cached still opens a connection to the Hub)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def check_hub(model_id: str, timeout: float = HUB_TIMEOUT) -> None:
    """``WeightsError`` unless the Hub answers within ``timeout`` seconds (any HTTP status counts as an answer)."""
    from huggingface_hub import constants

    request = urllib.request.Request(f"{constants.ENDPOINT}/api/models/{model_id}", method="HEAD")
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # an HTTP status, even 401 or 404, is an answer: the download says what it means
    except OSError as error:  # no connection, or no answer in time
        raise WeightsError(
            f"The detector {model_id!r} is not on this machine, and the Hugging Face Hub ({constants.ENDPOINT}) "
            f"could not be reached: {unreachable_reason(error, constants.ENDPOINT, timeout)}. {OFFLINE_HINT}"
        ) from None


def unreachable_reason(error: OSError, url: str, timeout: float) -> str:
    """What happened to a connection to ``url``, in words: its name did not resolve, it refused, or it stayed silent
    for ``timeout`` seconds (urllib wraps the first two in a ``URLError``; a silent server raises ``TimeoutError``)."""
    cause = error.reason if isinstance(error, urllib.error.URLError) else error
    host = urllib.parse.urlsplit(url).hostname or url
    if isinstance(cause, socket.gaierror):
        return f"the name {host} did not resolve (no DNS server answered, or no network)"
    if isinstance(cause, ConnectionRefusedError):
        return f"{host} refused the connection"
    if isinstance(cause, TimeoutError):
        return f"{host} did not answer within {timeout:g} s"
    return " ".join(str(cause).split()).rstrip(".") or type(cause).__name__


def _not_loadable(model_id: str, error: Exception | None, offline: bool) -> str:
    """One line: what failed (the library's reason, whitespace folded) and how to fix it."""
    if error is not None and any(sign in str(error).lower() for sign in ("gated", "401", "403")):
        return (
            f"{model_id!r} is gated on the Hugging Face Hub: ask for access at https://huggingface.co/{model_id} "
            "(and accept its licence) while logged in, then set HF_TOKEN to an access token of that account "
            f"(the download uses it). {OFFLINE_HINT}"
        )
    if error is None:
        where = "it is not in the Hugging Face cache and downloads are off (GROUNDLABEL_OFFLINE / HF_HUB_OFFLINE)"
    else:
        where = " ".join(str(error).split()).rstrip(".")
    return (
        f"Could not load the detector {model_id!r}: {where}. A Hub id such as {DETECTORS[DEFAULT_DETECTOR].source!r} is downloaded "
        "once into the Hugging Face cache on a machine with internet; or pass a local directory made with "
        f"save_pretrained (GROUNDLABEL_DETECTOR=/path/to/dir). {OFFLINE_HINT}"
    )


def resolve_checkpoint(
    spec: SegmenterSpec, path: str | os.PathLike | None, cache_dir: Path, offline: bool, timeout: float = HUB_TIMEOUT
) -> Path:
    """Find the checkpoint for ``spec``; download it into ``cache_dir`` once if allowed, else explain how to get it."""
    if path:
        if not Path(path).is_file():
            raise WeightsError(
                f"{spec.name} checkpoint not found at {str(path)!r} (from {spec.env_var} or the caller)."
            )
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
        reason = unreachable_reason(error, spec.url, timeout)
        raise WeightsError(f"Could not download {spec.name} weights: {reason}. {hint}") from None
    return cached


def _download(url: str, target: Path, timeout: float) -> None:
    """Stream to a temp file with a progress bar, then move into place so a broken download never looks cached."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp,
            tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar,
        ):
            while chunk := response.read(1 << 20):
                tmp.write(chunk)
                bar.update(len(chunk))
    shutil.move(tmp.name, target)
