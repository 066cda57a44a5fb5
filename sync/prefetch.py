"""Task images fetched and decoded ahead of the model by a small thread pool, so downloads overlap inference."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetched(items: Iterable[T], fetch: Callable[[T], R], depth: int = 4) -> Iterator[tuple[T, R | Exception]]:
    """``(item, fetch(item))`` in the order of ``items``, with at most ``depth`` fetches in flight.

    A fetch that raises yields its exception in place of the result: one broken image must not end a batch.
    Closing the iterator early waits only for the fetches already in flight.
    """
    with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="prefetch") as pool:
        queue = iter(items)
        in_flight: deque[tuple[T, Future]] = deque()
        for item in queue:
            in_flight.append((item, pool.submit(fetch, item)))
            if len(in_flight) >= depth:
                break
        while in_flight:
            item, future = in_flight.popleft()
            for following in queue:
                in_flight.append((following, pool.submit(fetch, following)))
                break
            try:
                yield item, future.result()
            except Exception as error:  # handed to the caller, which reports it per item
                yield item, error
