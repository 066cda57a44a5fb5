"""Pre-annotating on a Ray cluster (a local one, 2 CPUs, started once for this module) against a real Label Studio:
the same predictions as the single-process run, resume, an actor killed mid-run, Ctrl-C mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline import Options
from sync import Outbox, ProjectConfig
from sync.prelabel import PrelabelJob, prelabel
from sync.testing import start_process, stop_process
from tests.labelstudio import predictions_per_task
from tests.test_sync_prelabel import CONFIG, TASKS, expected_regions, png

ray = pytest.importorskip("ray")
PROMPT = "dog. possum"


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def project_with_tasks(label_studio) -> tuple[int, list[int]]:
    project = label_studio.create_project(CONFIG, title="ray prelabel test")
    files = {f"img{i:02d}.png": png(i) for i in range(TASKS)}
    return project, label_studio.import_local_files(project, files, folder=f"ray{project}")


def engine():
    from sync.ray_engine import RayEngine

    return RayEngine(actors=2, cpus_per_actor=1, images_per_call=4)


def stored_regions(label_studio, task_ids: list[int]) -> list[list[dict]]:
    return [label_studio.api("GET", "/api/predictions", params={"task": task})[0]["result"] for task in task_ids]


def test_ray_run_gives_each_task_one_prediction_equal_to_the_single_process_run_and_a_rerun_skips_all(
    ray_cluster, label_studio, ls_client, pipeline, project_with_tasks, tmp_path
):
    project, task_ids = project_with_tasks
    job = PrelabelJob(project, PROMPT, Options(0.3), write_batch=8)
    first = prelabel(ls_client, pipeline, job, Outbox(tmp_path), engine=engine())
    assert (first.done, first.skipped, first.failed) == (TASKS, 0, {})
    assert predictions_per_task(label_studio, project) == Counter({task: 1 for task in task_ids})
    expected = [expected_regions(pipeline, png(i), Options(0.3)) for i in range(TASKS)]
    assert sum(map(len, expected)) > TASKS  # the comparison covers regions, not only empty results
    assert stored_regions(label_studio, task_ids) == expected
    stored = label_studio.api("GET", "/api/predictions", params={"task": task_ids[0]})[0]
    assert stored["model_version"] == ProjectConfig.parse(CONFIG).version(
        pipeline(png(0), PROMPT, Options(0.3)).model_version
    )

    second = prelabel(ls_client, pipeline, job, Outbox(tmp_path), engine=engine())
    assert (second.done, second.skipped) == (0, TASKS)
    assert predictions_per_task(label_studio, project) == Counter({task: 1 for task in task_ids})


def test_an_actor_killed_mid_run_is_restarted_and_every_task_ends_with_one_prediction(
    ray_cluster, label_studio, ls_client, pipeline, project_with_tasks, tmp_path
):
    project, task_ids = project_with_tasks
    running, killed = engine(), []

    def kill_once(progress) -> None:
        if progress.done >= 10 and not killed:
            killed.append(running.actor_handles[0])
            ray.kill(running.actor_handles[0], no_restart=False)

    job = PrelabelJob(project, PROMPT, Options(0.3), write_batch=4)
    first = prelabel(ls_client, pipeline, job, Outbox(tmp_path), on_progress=kill_once, engine=running)
    assert killed and (first.done, first.failed) == (TASKS, {})  # Ray restarted the actor and ran its batch again
    rerun = prelabel(ls_client, pipeline, job, Outbox(tmp_path), engine=engine())
    assert (rerun.done, rerun.skipped) == (0, TASKS)
    assert predictions_per_task(label_studio, project) == Counter({task: 1 for task in task_ids})
    assert stored_regions(label_studio, task_ids) == [
        expected_regions(pipeline, png(i), Options(0.3)) for i in range(TASKS)
    ]


def test_stop_mid_run_writes_whole_predictions_and_kills_the_actors(
    ray_cluster, label_studio, ls_client, pipeline, project_with_tasks, tmp_path
):
    project, task_ids = project_with_tasks
    stop, running = threading.Event(), engine()
    progress = prelabel(
        ls_client,
        pipeline,
        PrelabelJob(project, PROMPT, Options(0.3), write_batch=4),
        Outbox(tmp_path),
        on_progress=lambda p: p.done >= 12 and stop.set(),
        stop=stop,
        engine=running,
    )
    assert progress.interrupted and 12 <= progress.done < TASKS
    assert sum(predictions_per_task(label_studio, project).values()) == progress.done
    assert running.actor_handles == []  # killed, not left holding the cluster's CPUs
    assert ray.available_resources().get("CPU", 0) == pytest.approx(2, abs=0.01) or _freed_soon()


def _freed_soon() -> bool:
    deadline = time.monotonic() + 60  # Ray frees a killed actor's CPUs asynchronously: seconds on a loaded machine
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= 2:
            return True
        time.sleep(0.2)
    return False


def test_ctrl_c_on_the_command_line_stops_a_ray_run_and_a_rerun_finishes(
    ray_cluster, label_studio, model_paths, project_with_tasks, tmp_path
):
    project, task_ids = project_with_tasks
    inherited = {k: v for k, v in os.environ.items() if k != "GROUNDLABEL_SEGMENTER"}
    env = {
        **inherited,
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        "GROUNDLABEL_DETECTOR": str(model_paths[0]),
        "GROUNDLABEL_DEVICE": "cpu",
        "GROUNDLABEL_STATE_DIR": str(tmp_path),
    }
    command = [
        sys.executable,
        "-m",
        "sync.prelabel",
        "--project",
        str(project),
        "--prompt",
        PROMPT,
        "--engine",
        "ray",
        "--address",
        ray_cluster,
        "--actors",
        "2",
        "--cpus-per-actor",
        "1",
        "--write-batch",
        "4",
    ]
    root = Path(__file__).resolve().parents[1]
    run = start_process(command, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # a loaded machine may take minutes to import torch, connect to Ray and start two actors
        deadline = time.monotonic() + 600
        while sum(predictions_per_task(label_studio, project).values()) < 10 and time.monotonic() < deadline:
            assert run.poll() is None, run.communicate()[0]
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        output = run.communicate(timeout=300)[0]
    finally:
        stop_process(run)
    written = predictions_per_task(label_studio, project)
    assert run.returncode == 130, output
    assert 10 <= sum(written.values()) < TASKS and set(written.values()) == {1}
    assert f"Interrupted: {sum(written.values())} pre-annotated" in output

    rerun = start_process(command, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = rerun.communicate(timeout=600)
    finally:
        stop_process(rerun)
    assert rerun.returncode == 0, stdout + stderr
    assert f"Finished: {TASKS - sum(written.values())} pre-annotated, {sum(written.values())} skipped" in stdout
    assert predictions_per_task(label_studio, project) == Counter({task: 1 for task in task_ids})


@pytest.mark.slow  # many model runs: the slow tier (tests/conftest.py)
def test_the_app_and_the_local_engine_never_import_ray():
    root = Path(__file__).resolve().parents[1]
    probe = (
        "import sys, app, sync.prelabel, ui; from sync.prelabel import main; "
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
