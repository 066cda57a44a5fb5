"""SAM / MobileSAM checkpoint resolution: explicit path, environment variable, cache dir, or a one-time download."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .errors import WeightsError


@dataclass(frozen=True)
class SegmenterSpec:
    name: str  # what users type: sam_vit_b, mobile_sam, ...
    package: str  # module whose sam_model_registry builds it
    model_type: str  # key in that registry
    filename: str
    url: str
    seed_env_var: str | None = None  # the name Label Studio's grounding_sam backend used for this checkpoint

    @property
    def env_var(self) -> str:
        return f"GROUNDLABEL_{self.name.upper()}_CHECKPOINT"

    def checkpoint_from_env(self) -> str | None:
        return os.environ.get(self.env_var) or (os.environ.get(self.seed_env_var) if self.seed_env_var else None)


_META = "https://dl.fbaipublicfiles.com/segment_anything/"
SEGMENTERS = {
    spec.name: spec
    for spec in (
        SegmenterSpec("sam_vit_b", "segment_anything", "vit_b", "sam_vit_b_01ec64.pth", _META + "sam_vit_b_01ec64.pth"),
        SegmenterSpec("sam_vit_l", "segment_anything", "vit_l", "sam_vit_l_0b3195.pth", _META + "sam_vit_l_0b3195.pth"),
        SegmenterSpec("sam_vit_h", "segment_anything", "vit_h", "sam_vit_h_4b8939.pth", _META + "sam_vit_h_4b8939.pth",
                      "SAM_CHECKPOINT"),
        SegmenterSpec(
            "mobile_sam", "mobile_sam", "vit_t", "mobile_sam.pt",
            "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt", "MOBILESAM_CHECKPOINT",
        ),
    )
}
_ALIASES = {"vit_b": "sam_vit_b", "vit_l": "sam_vit_l", "vit_h": "sam_vit_h", "sam": "sam_vit_b",
            "vit_t": "mobile_sam", "mobilesam": "mobile_sam"}


def segmenter_spec(name: str) -> SegmenterSpec:
    key = _ALIASES.get(name.lower().replace("-", "_"), name.lower().replace("-", "_"))
    if key not in SEGMENTERS:
        raise ValueError(f"Unknown segmenter {name!r}; choose one of {', '.join(SEGMENTERS)}.")
    return SEGMENTERS[key]


def cache_dir() -> Path:
    return Path(os.environ.get("GROUNDLABEL_CACHE", Path.home() / ".cache" / "groundlabel"))


def resolve_checkpoint(spec: SegmenterSpec, path: str | os.PathLike | None = None, timeout: float = 30.0) -> Path:
    """Find the checkpoint for ``spec``; download it into the cache dir once if allowed, else explain how to get it."""
    explicit = path or spec.checkpoint_from_env()
    if explicit:
        if not Path(explicit).is_file():
            raise WeightsError(f"{spec.name} checkpoint not found at {explicit!r} (from {spec.env_var} or the caller).")
        return Path(explicit)
    cached = cache_dir() / spec.filename
    if cached.is_file():
        return cached
    hint = (
        f"Download {spec.filename} from {spec.url} and set {spec.env_var}=/path/to/{spec.filename} "
        f"(or put it in {cache_dir()})."
    )
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("GROUNDLABEL_OFFLINE") == "1":
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
