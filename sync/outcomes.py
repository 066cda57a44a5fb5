"""The one outcome policy: what a task's outcome (``sync.tasks``) leaves in Label Studio. The ML backend's
``/predict`` (and its background finishing), ``sync.prelabel`` (local and Ray) and the UI's pre-annotation all
settle their tasks here, so a task ends the same way whichever of them ran it:

- ``done``: its regions are stored;
- ``failed`` (for good: not an image, 404, a refused URL): an empty prediction is stored, so no run asks again, and
  the reason is logged (``Task <id>: empty prediction: <reason>``);
- ``retry`` (may pass: timeout, host or Label Studio down, 5xx): nothing is stored, so the next run tries again
  (``Task <id>: nothing stored, the next run retries (<n> of <N> tries): <reason>``), until the task's N-th such
  failure in a row (``GROUNDLABEL_MAX_RETRIES``), which is settled as failed with ``(failed N times: given up)``:
  Label Studio answers 500 for some faults that never pass, and a run must not retry them forever.

The transient failures are counted per task in ``<state dir>/retries.json``, one file for all of them: a task that
failed twice in "Retrieve Predictions" and once in ``sync.prelabel`` has failed three times.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from .convert import LabelStudioResult
from .files import JsonStore
from .tasks import TaskOutcome

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRIES_FILE = "retries.json"  # in the state directory: "<project>:<task>" -> transient failures in a row


class OutcomePolicy:
    """Settles outcomes (see the module docstring); ``max_retries`` is N."""

    def __init__(self, state_dir: Path, max_retries: int):
        self.counts = JsonStore(Path(state_dir) / RETRIES_FILE)
        self.max_retries = max_retries

    def settle(self, project: str | int, task_id, outcome: TaskOutcome[T], empty: LabelStudioResult) -> TaskOutcome[T]:
        """``outcome`` as it ends: ``done`` with its result, ``failed`` with ``empty`` as its result (a ``retry``
        that was the task's N-th in a row among them), or ``retry`` (no result: store nothing; the reason says
        which try it was). Logs the last two and keeps the count of the task's transient failures."""
        key = f"{project}:{task_id}"
        if outcome.status == "retry":
            tries = self.counts.get(key, 0) + 1
            if tries < self.max_retries:
                self.counts.set(key, tries)
                log.warning(
                    "Task %s: nothing stored, the next run retries (%d of %d tries): %s",
                    task_id,
                    tries,
                    self.max_retries,
                    outcome.reason,
                )
                return replace(outcome, result=None, reason=f"{outcome.reason} (try {tries} of {self.max_retries})")
            outcome = replace(outcome, status="failed", reason=f"{outcome.reason} (failed {tries} times: given up)")
        self.counts.delete(key)
        if outcome.status == "done":
            return outcome
        log.warning("Task %s: empty prediction: %s", task_id, outcome.reason)
        return replace(outcome, result=empty)
