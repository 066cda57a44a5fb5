"""The test suite's own promises: light imports stay free of torch, and an interrupted run (Ctrl-C, SIGTERM) leaves
none of the processes it started (Label Studio, a CLI subprocess, a local Ray cluster) running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sync.testing import start_process, stop_process

ROOT = Path(__file__).resolve().parents[1]


def test_importing_sync_config_pipeline_and_sync_loads_no_torch_or_transformers():
    probe = (
        "import sys, pipeline, sync, sync.config; from pipeline import LabelMap, Options; from sync import ConfigError; "
        "print(sorted(m for m in ('torch', 'transformers', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_lazy_names_resolve_to_what_the_submodules_define_and_win_over_a_submodule_of_the_same_name():
    import importlib

    import pipeline
    import sync

    importlib.import_module("pipeline.render")  # binds the submodule on the package, as any import of it does
    assert pipeline.render is importlib.import_module("pipeline.render").render
    assert sync.ProjectConfig is importlib.import_module("sync.config").ProjectConfig
    assert set(pipeline.__all__) >= {"LabelMap", "GroundingPipeline", "render"}
    with pytest.raises(AttributeError):
        pipeline.NotAName  # noqa: B018


# A test that holds what a real run holds (a Label Studio, a CLI subprocess, optionally a local Ray cluster) and
# waits to be interrupted; it writes the word "up" once everything is started.
PROBE = """
import os, sys, time
from pathlib import Path

import pytest

from sync.testing import start_process


@pytest.fixture
def cluster():
    if os.environ["PROBE_RAY"] != "1":
        yield
        return
    import ray

    ray.init(num_cpus=1, include_dashboard=False)
    yield
    ray.shutdown()


def test_holds_everything_until_interrupted(label_studio, cluster):
    start_process([sys.executable, "-c", "import time; time.sleep(600)"])
    Path(os.environ["PROBE_READY"]).write_text("up")
    time.sleep(600)
"""


def _children() -> dict[int, list[int]]:
    """Live processes by parent PID (zombies are gone already: they only wait to be reaped)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue
            if state != "Z":
                tree.setdefault(int(ppid), []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.add(pid)
        except (OSError, IndexError):
            pass
    return alive


def _commands(pids: set[int]) -> dict[int, str]:
    """What each process runs (its command line), for a failure message that says which one was left."""
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            found[pid] = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    return found


RAY = pytest.param(
    "ray",
    marks=[
        pytest.mark.skipif(not __import__("importlib").util.find_spec("ray"), reason="no ray"),
    ],
)


@pytest.mark.slow
@pytest.mark.labelstudio
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("held", ["server", RAY])
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_run_leaves_no_process_behind(tmp_path, how, held):
    probe, ready = tmp_path / "test_probe.py", tmp_path / "ready"
    probe.write_text(textwrap.dedent(PROBE))
    env = {**os.environ, "PROBE_READY": str(ready), "PROBE_RAY": "1" if held == "ray" else "0"}
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", str(probe)]
    run = start_process(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 600  # Label Studio and Ray start in seconds, minutes on a loaded machine
        while not ready.exists():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
            time.sleep(0.2)
        started = _descendants(run.pid)
        assert len(started) >= 2  # Label Studio and the CLI subprocess at least
        if how == signal.SIGINT:  # what a terminal does: the signal goes to the foreground process group
            os.killpg(run.pid, how)
        else:
            run.send_signal(how)
        output = run.communicate(timeout=60)[0]
        deadline = time.monotonic() + 10
        while _alive(started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(started), f"still running: {_commands(_alive(started))}\n{output}"
        assert "KeyboardInterrupt" in output or "Interrupted" in output, output
    finally:
        stop_process(run)
