"""Counting model runs, so tests can prove that a cache answered or that work was shared."""

from __future__ import annotations

import time
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Iterator

import torch


@contextmanager
def count_calls(module: torch.nn.Module, delay: float = 0.0) -> Iterator[SimpleNamespace]:
    """Count forward passes of ``module`` (e.g. the detector) while the block runs; ``delay`` seconds are added to
    each, so concurrent callers overlap for sure."""
    calls = SimpleNamespace(count=0)

    def before(*_) -> None:
        calls.count += 1
        time.sleep(delay)

    handle = module.register_forward_pre_hook(before)
    try:
        yield calls
    finally:
        handle.remove()
