"""A machine that cannot reach the Hugging Face Hub: the first model load fails within seconds with one clean
sentence naming the fix, later requests fail at once with the same reason, and *Load models* tries again. The Hub
is a local port that accepts connections and never answers (a closed port would refuse at once and prove
nothing)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

SCRIPT = r"""
import json, time
from pipeline import LazyPipeline, PipelineSettings, WeightsError
from ui.models import ModelHub, load_models

lazy = LazyPipeline(PipelineSettings.from_env())
timings, messages = [], []
for attempt in ("first", "second"):
    started = time.monotonic()
    try:
        lazy.get()
    except WeightsError as error:
        messages.append(str(error))
    timings.append(time.monotonic() - started)
started = time.monotonic()
status = load_models(ModelHub(lazy))()
timings.append(time.monotonic() - started)
print(json.dumps({"timings": timings, "messages": messages, "status": status, "health": lazy.status()}))
"""


class SilentHub:
    """Accepts TCP connections on 127.0.0.1 and never answers; counts them."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(connection)  # held open, never answered

    def close(self) -> None:
        self.server.close()
        for connection in self.connections:
            connection.close()


def run_loads(tmp_path, hub: SilentHub, **extra: str) -> dict:
    """The script in a fresh process whose Hugging Face Hub is ``hub`` and whose caches are empty."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("HF_HUB_OFFLINE", "GROUNDLABEL_OFFLINE", "TRANSFORMERS_OFFLINE", "GROUNDLABEL_DETECTOR")
    }
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{hub.port}",
        HF_HOME=str(tmp_path / "hf"),
        GROUNDLABEL_CACHE_DIR=str(tmp_path / "cache"),
        PYTHONPATH=str(Path(__file__).parent.parent),
        **extra,
    )
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_unreachable_hub_fails_fast_with_the_fix_and_the_failure_is_remembered_until_load_models(tmp_path):
    hub = SilentHub()
    try:
        report = run_loads(tmp_path, hub)
    finally:
        hub.close()
    first, second, load_models = report["timings"]
    message = report["messages"][0]

    assert first < 20 and second < 0.5 and load_models > 1  # Load models really tried again
    assert report["messages"][1] == message
    assert "did not answer within" in message and "GROUNDLABEL_OFFLINE=1" in message and "HF_HUB_OFFLINE" in message
    assert "python app.py --demo" in message and ".." not in message and "\n" not in message
    assert len(hub.connections) == 2  # one probe for the first load, none for the second, one for Load models
    assert "failed to load" in report["status"] and "Load models" in report["status"]
    assert report["health"]["error"] == message


def test_offline_never_opens_a_connection(tmp_path):
    hub = SilentHub()
    try:
        report = run_loads(tmp_path, hub, GROUNDLABEL_OFFLINE="1")
    finally:
        hub.close()

    assert hub.connections == [] and report["timings"][0] < 5
    assert "downloads are off" in report["messages"][0] and "\n" not in report["messages"][0]


def test_a_segmenter_that_failed_to_load_is_said_in_the_status_and_health_until_load_models(pipeline):
    import pytest

    from pipeline import LazyPipeline, WeightsError
    from ui.models import ModelHub, load_models

    lazy = LazyPipeline(pipeline=pipeline)
    hub = ModelHub(lazy)
    with pytest.raises(WeightsError, match="downloads are off"):  # the tests run offline: no sam_vit_b weights
        hub.load("sam_vit_b", lambda *args, **kwargs: None)

    assert "**sam_vit_b** failed" in hub.status_markdown() and "sam_vit_b" in lazy.status()["segmenter_errors"]
    with pytest.raises(WeightsError):  # remembered: no second try until asked
        pipeline.segmenters.get("sam_vit_b")
    assert "sam_vit_b" not in load_models(hub)() and lazy.status()["segmenter_errors"] == {}
