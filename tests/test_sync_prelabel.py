"""Pre-annotating a whole project against a real Label Studio: progress, summary, resume, no duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline import Options
from sync import Outbox, ProjectConfig
from sync.prelabel import PrelabelJob, prelabel
from sync.testing import start_process
from tests.labelstudio import png as random_png
from tests.labelstudio import predictions_per_task

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="dog"/><Label value="possum"/>
  </RectangleLabels>
</View>"""
TASKS = 50


def png(seed: int) -> bytes:
    return random_png(96, 72, seed)


@pytest.fixture
def project_with_tasks(label_studio) -> tuple[int, list[int]]:
    project = label_studio.create_project(CONFIG, title="prelabel test")
    files = {f"img{i:02d}.png": png(i) for i in range(TASKS)}
    return project, label_studio.import_local_files(project, files, folder=f"prelabel{project}")


def test_prelabel_annotates_every_task_once_and_a_rerun_skips_them(
    label_studio, ls_client, pipeline, project_with_tasks, tmp_path
):
    project, task_ids = project_with_tasks
    seen = []
    job = PrelabelJob(project, prompt="dog. possum", options=Options(0.3), write_batch=8)
    outbox = Outbox(tmp_path / "outbox")
    first = prelabel(ls_client, pipeline, job, outbox, on_progress=lambda p: seen.append((p.finished, p.total)))
    assert (first.done, first.skipped, first.failed) == (TASKS, 0, {})
    assert seen[0] == (0, TASKS) and seen[-1] == (TASKS, TASKS)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert predictions_per_task(label_studio, project) == Counter({task: 1 for task in task_ids})
    stored = label_studio.api("GET", "/api/predictions", params={"task": task_ids[0]})[0]
    expected = pipeline(png(0), "dog. possum", Options(0.3))
    assert stored["model_version"] == ProjectConfig.parse(CONFIG).version(expected.model_version)
    assert len(stored["result"]) == sum(label is not None for label in expected.labels)
    assert {r["value"]["rectanglelabels"][0] for r in stored["result"]} <= {"dog", "possum"}

    second = prelabel(ls_client, pipeline, job, outbox)
    assert (second.done, second.skipped) == (0, TASKS)
    assert predictions_per_task(label_studio, project) == Counter({task: 1 for task in task_ids})


def test_a_broken_image_fails_its_task_only(label_studio, ls_client, pipeline, tmp_path):
    project = label_studio.create_project(CONFIG, title="prelabel broken")
    good = label_studio.import_local_files(project, {"ok.png": png(1)}, folder=f"broken{project}")
    bad = label_studio.import_local_files(project, {"bad.png": b"not a png"}, folder=f"broken{project}")
    progress = prelabel(ls_client, pipeline, PrelabelJob(project), Outbox(tmp_path))  # no prompt: the config's labels
    assert progress.done == 1 and list(progress.failed) == bad
    stored = label_studio.api("GET", "/api/predictions", params={"task": good[0]})[0]
    expected = pipeline(png(1), "dog. possum", Options())
    assert len(stored["result"]) == len(expected) > 0
    assert "not a readable image" in progress.failed[bad[0]]
    # failed for good: an empty prediction, as the ML backend stores (sync.outcomes), so no rerun fetches it again
    assert predictions_per_task(label_studio, project) == Counter({good[0]: 1, bad[0]: 1})
    assert label_studio.api("GET", "/api/predictions", params={"task": bad[0]})[0]["result"] == []
    assert f"task {bad[0]}: " in progress.summary()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_interrupted_run_writes_whole_predictions_and_a_rerun_finishes_the_rest(
    label_studio, model_paths, project_with_tasks, tmp_path, stop
):
    project, task_ids = project_with_tasks
    inherited = {
        k: v for k, v in os.environ.items() if k != "GROUNDLABEL_SEGMENTER"
    }  # tests' tiny SAM is unknown there
    env = {
        **inherited,
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        "GROUNDLABEL_DETECTOR": str(model_paths[0]),
        "GROUNDLABEL_DEVICE": "cpu",
        "GROUNDLABEL_STATE_DIR": str(tmp_path),
    }
    command = [sys.executable, "-m", "sync.prelabel", "--project", str(project), "--prompt", "dog. possum"]
    root = Path(__file__).resolve().parents[1]
    run = start_process(command, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while sum(predictions_per_task(label_studio, project).values()) < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    run.send_signal(stop)
    output = run.communicate(timeout=60)[0]
    time.sleep(1)  # a write the killed process had sent may still be landing
    written = predictions_per_task(label_studio, project)
    assert 10 <= sum(written.values()) < TASKS and set(written.values()) == {1}
    if stop == signal.SIGINT:  # Ctrl-C: the current batch is written, then a summary
        assert run.returncode == 130, output
        assert f"Interrupted: {sum(written.values())} pre-annotated" in output
    else:  # killed: only whole batches ever reached Label Studio
        assert run.returncode == -signal.SIGKILL

    rerun = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"Finished: {TASKS - sum(written.values())} pre-annotated, {sum(written.values())} skipped" in rerun.stdout
    assert "pre-annotating: 100%" in rerun.stderr
    assert predictions_per_task(label_studio, project) == Counter({task: 1 for task in task_ids})


def test_replace_leaves_one_groundlabel_prediction_per_task_and_other_models_alone(
    label_studio, ls_client, pipeline, tmp_path
):
    project = label_studio.create_project(CONFIG, title="prelabel replace")
    tasks = label_studio.import_local_files(
        project, {f"r{i}.png": png(200 + i) for i in range(3)}, folder=f"replace{project}"
    )
    other = ls_client.create_prediction(tasks[0], [], score=0.5, model_version="yolo-v8")
    outbox = Outbox(tmp_path)

    def versions(task: int) -> list[str]:
        return sorted(p["model_version"] for p in label_studio.api("GET", "/api/predictions", params={"task": task}))

    prelabel(ls_client, pipeline, PrelabelJob(project, "dog. possum", Options(0.3)), outbox)
    piled = prelabel(ls_client, pipeline, PrelabelJob(project, "dog. possum", Options(0.4)), outbox)  # no replace
    assert piled.done == 3 and len(versions(tasks[1])) == 2  # without --replace, the two settings pile up
    replaced = prelabel(
        ls_client, pipeline, PrelabelJob(project, "dog. possum", Options(0.5), replace_older=True), outbox
    )

    config = ProjectConfig.parse(CONFIG)  # the version names the config's output tags too (-c<digest>)
    newest = config.version(pipeline.model_version(Options(0.5), pipeline.check_prompt("dog. possum")))
    assert replaced.done == 3
    assert versions(tasks[0]) == sorted([newest, "yolo-v8"]) and versions(tasks[1]) == versions(tasks[2]) == [newest]
    kept = label_studio.api("GET", "/api/predictions", params={"task": tasks[1]})[0]
    assert kept["result"] == expected_regions(pipeline, png(201), Options(0.5))
    assert other["id"] in {p["id"] for p in label_studio.api("GET", "/api/predictions", params={"task": tasks[0]})}

    # a rerun with the current settings but replace on cleans a task that still holds an older one of ours
    ls_client.create_prediction(tasks[2], [], score=0.1, model_version="groundlabel-old")
    again = prelabel(ls_client, pipeline, PrelabelJob(project, "dog. possum", Options(0.5), replace_older=True), outbox)
    assert again.skipped == 3 and versions(tasks[2]) == [newest]


def expected_regions(pipeline, image: bytes, options: Options) -> list[dict]:
    from sync import ProjectConfig, to_label_studio

    config = ProjectConfig.parse(CONFIG)
    return to_label_studio(pipeline(image, "dog. possum", options, config.label_map()), config).result
