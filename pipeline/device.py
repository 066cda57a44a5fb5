"""Device and dtype selection: CUDA when present, reduced precision only on a GPU unless asked for."""

from __future__ import annotations

import torch

from .errors import SettingsError

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def select_device(name: str | None = None) -> torch.device:
    """``name`` ('cpu', 'cuda', 'cuda:1', 'auto' or None) -> a usable device."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SettingsError(f"Unknown device {name!r}: use cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SettingsError(
            f"Device {name!r} was asked for, but CUDA is not available on this machine: "
            "set GROUNDLABEL_DEVICE=cpu (or pass --device cpu)."
        )
    return device


def select_dtype(device: torch.device, name: str | None = None) -> torch.dtype:
    """float32 on CPU (half precision is slower and less accurate there); float16 on GPU by default."""
    if name in (None, "", "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[name.lower()]
    except KeyError:
        raise SettingsError(f"Unknown dtype {name!r}; use one of {sorted(_DTYPES)}.") from None
