"""Batch work that outlives Label Studio's patience: "Retrieve Predictions" sends every selected task in one
/predict and gives up after ``ML_TIMEOUT_PREDICT`` (100 s), storing nothing. The ML backend answers what it finished
within its budget, "nothing yet" (``[]``) for the rest, and finishes those here, in a thread, writing them to Label
Studio through the same bulk, idempotent, outbox-backed writer as ``sync.prelabel`` (requests sized by bytes).

While a project's tasks are being finished here, a /predict for them answers "nothing yet" (so a second retrieval
never computes or stores them twice), and interactive requests go first: the thread waits between tasks while one
is running.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from .client import LabelStudioClient
from .convert import LabelStudioResult
from .push import Outbox, PredictionWriter, Pusher
from .tasks import TaskOutcome

log = logging.getLogger(__name__)
WRITE_BATCH = 10  # predictions that may wait unwritten; a request also holds at most ``write_bytes`` of JSON


class Finisher:
    """Finishes batch tasks after the /predict answer; see the module docstring."""

    def __init__(self, outbox: Outbox, write_bytes: int):
        self.outbox = outbox
        self.write_bytes = write_bytes
        self._owned: set[tuple[str, int]] = set()  # (project, task id) being finished here
        self._interactive = 0
        self._idle = threading.Condition()
        self.last_error: str | None = None  # why background results could not be written, for /health

    def owns(self, project: str, task_id) -> bool:
        with self._idle:
            return (project, task_id) in self._owned

    @property
    def running(self) -> int:
        with self._idle:
            return len(self._owned)

    @contextlib.contextmanager
    def interactive(self) -> Iterator[None]:
        """Mark an interactive request: background work pauses between tasks until it is answered."""
        with self._idle:
            self._interactive += 1
        try:
            yield
        finally:
            with self._idle:
                self._interactive -= 1
                self._idle.notify_all()

    def finish(
        self,
        project: str,
        tasks: list[dict],
        outcomes: Iterator[TaskOutcome[dict]],
        answer: Callable[[TaskOutcome[dict]], LabelStudioResult | None],
        client: LabelStudioClient,
    ) -> None:
        """Go on with ``outcomes`` (the rest of a /predict's task loop) in a thread; ``answer`` turns each into
        what to store (None: nothing, a failure that may pass), written to ``client``'s Label Studio."""
        keys = {(project, task.get("id")) for task in tasks}
        with self._idle:
            self._owned |= keys
        threading.Thread(
            target=self._run, args=(project, keys, outcomes, answer, client), daemon=True, name=f"finish-{project}"
        ).start()

    def _run(
        self,
        project: str,
        keys: set,
        outcomes: Iterator[TaskOutcome[dict]],
        answer: Callable[[TaskOutcome[dict]], LabelStudioResult | None],
        client: LabelStudioClient,
    ) -> None:
        writer = PredictionWriter(client, int(project), Pusher(client, self.outbox), self.write_bytes, WRITE_BATCH)
        finished, refused = 0, {}
        try:
            for outcome in self._between_interactive(outcomes):
                result = answer(outcome)
                if result is not None:
                    finished += 1
                    refused |= writer.add(int(outcome.task.get("id")), result)
            refused |= writer.flush()
            for task_id, reason in refused.items():
                log.warning("Task %s: Label Studio refused the background prediction: %s", task_id, reason)
            log.info(
                "Project %s: %d predictions finished in the background and written to Label Studio (%d requests).",
                project,
                finished - len(refused),
                writer.requests,
            )
        except Exception as error:  # noqa: BLE001 - a thread's last word goes to the log and /health
            self.last_error = f"background predictions for project {project} stopped: {error}"
            log.exception("Background predictions for project %s stopped.", project)
        finally:
            with self._idle:
                self._owned -= keys

    def _between_interactive(self, outcomes: Iterator[TaskOutcome[dict]]) -> Iterator[TaskOutcome[dict]]:
        for outcome in outcomes:
            yield outcome
            with self._idle:
                self._idle.wait_for(lambda: self._interactive == 0)
