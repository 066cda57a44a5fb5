"""Counting model runs, so tests can prove that a cache answered or that work was shared."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import torch


@contextmanager
def count_calls(module: torch.nn.Module, delay: float = 0.0, rows: str | None = None) -> Iterator[SimpleNamespace]:
    """Count forward passes of ``module`` (e.g. the detector) while the block runs, in ``count``; with ``rows``
    (a keyword argument's name), also how many rows that argument held over all calls (e.g. prompts decoded).
    ``delay`` seconds are added to each pass, so concurrent callers overlap for sure."""
    calls = SimpleNamespace(count=0, rows=0)

    def before(_, args, kwargs) -> None:
        calls.count += 1
        if rows is not None:
            calls.rows += len(kwargs[rows])
        time.sleep(delay)

    handle = module.register_forward_pre_hook(before, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()
