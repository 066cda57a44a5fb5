"""``python -m sync.finetune`` on a real Label Studio project of toy scenes annotated from their ground truth: the toy
detector fine-tunes a few steps, both detectors are measured on the held-out tasks, the directory loads offline
through the registry and finds its shapes, the model card names its source; bad projects get a sentence; Ctrl-C
then the same command resumes. And the shared training loop's loss falls on a fixed batch."""

from __future__ import annotations

import io
import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline.testing import shapes as S
from sync.finetune import STATE_FILE, main
from tests.labelstudio import rectangle_result

LABELS = ("red square", "blue circle", "green triangle")
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="red square" predicted_values="red box"/>
    <Label value="blue circle" predicted_values="blue ball"/>
    <Label value="green triangle"/>
  </RectangleLabels>
</View>"""
SCENES = 8


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _annotated_project(label_studio, scenes: int = SCENES, extra: dict[str, bytes] | None = None) -> int:
    """A project of ``scenes`` toy scenes (1-3 of the labels' shapes each, a yellow square in the first: a label
    the config lacks), each annotated with its shapes' boxes (the second's regions without their image size);
    ``extra`` images are annotated with one box each."""
    rng = np.random.default_rng(5)
    combos = [tuple(label.split()) for label in LABELS]
    project = label_studio.create_project(CONFIG, title="finetune test")
    files, truths = {}, []
    for i in range(scenes):
        picked = [combos[k] for k in rng.choice(3, size=int(rng.integers(1, 4)), replace=False)]
        image, shapes = S.make_scene(rng, shapes=picked + ([("yellow", "square")] if i == 0 else []))
        files[f"scene{i}.png"] = _png(image)
        truths.append([rectangle_result(s.xyxy, s.name) for s in shapes])
    for region in truths[1]:  # an API-made annotation may name no image size: the image's own is used
        del region["original_width"], region["original_height"]
    files.update(extra or {})
    truths += [[rectangle_result([10, 10, 50, 50], LABELS[0])] for _ in extra or {}]
    tasks = label_studio.import_local_files(project, files, folder=f"finetune{project}")
    for task, result in zip(tasks, truths):
        label_studio.api("POST", f"/api/tasks/{task}/annotations/", json={"result": result})
    return project


@pytest.fixture
def toy_env(label_studio, monkeypatch):
    """The settings a user sets: Label Studio, the toy detector as the app's detector, its input size."""
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        "GROUNDLABEL_DETECTOR": str(S.shapes_detector_dir()),
        "GROUNDLABEL_INPUT_SIZE": str(S.SHAPES_INPUT_SIZE),
        "BOX_THRESHOLD": str(S.SHAPES_BOX_THRESHOLD),
        "TEXT_THRESHOLD": str(S.SHAPES_TEXT_THRESHOLD),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_a_fine_tune_is_measured_saved_with_its_card_and_loads_offline_as_a_local_detector(
    label_studio, toy_env, tmp_path, capsys
):
    from pipeline import GroundingPipeline, Options, PipelineSettings

    corrupt = {"broken.png": b"\x89PNG\r\n\x1a\n not really a picture"}
    project = _annotated_project(label_studio, extra=corrupt)
    out = tmp_path / "tuned"
    assert main(["--project", str(project), "--out", str(out), "--steps", "3", "--holdout", "0.25"]) == 0
    printed = capsys.readouterr()
    text = printed.out
    assert f"on project {project}: 6 images, 3 steps" in text
    assert "base detector on 2 held-out tasks:" in text and "fine-tuned detector on 2 held-out tasks:" in text
    for name in ("base detector", "fine-tuned detector"):  # each table: a header and a row per held-out label
        head, *rows = text.split(f"{name} on 2 held-out tasks:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert head.split()[-2:] == ["precision", "recall"] and rows, text
        assert all(any(row.strip().startswith(label) for label in LABELS) for row in rows), rows
        assert any(re.fullmatch(r"\d\.\d{3}", row.split()[-1]) for row in rows), rows
    first, last = (float(v) for v in re.search(r"loss ([0-9.]+) -> ([0-9.]+)", text).groups())
    assert math.isfinite(first) and math.isfinite(last) and first > 0
    assert "1 task(s) left out, their image unusable" in text
    assert "their label is not in the labeling config: 'yellow square' (1)" in text
    assert "fine-tuning" in printed.err and "step" in printed.err  # the progress bar

    card = (out / "README.md").read_text()
    assert f"Label Studio project {project}" in card and f"project {project} at {label_studio.url}" in card
    assert "images: 6 trained on, 2 held out" in card and "steps: 3 " in card
    assert card.count("precision") >= 2 and str(S.shapes_detector_dir()) in card

    # the directory is a local detector: resolved through the registry offline, and it finds its shapes
    settings = PipelineSettings(detector=str(out), offline=True, input_size=S.SHAPES_INPUT_SIZE, device="cpu")
    assert settings.detector_spec.family == "grounding-dino" and settings.detector_spec.name == "tuned"
    tuned = GroundingPipeline.from_settings(settings)
    image, shapes = S.make_scene(np.random.default_rng(99), shapes=[("red", "square"), ("blue", "circle")])
    result = tuned(_png(image), "red square. blue circle", Options(S.SHAPES_BOX_THRESHOLD, S.SHAPES_TEXT_THRESHOLD))
    for shape in shapes:
        hits = [
            S.box_iou(box, shape.xyxy)[0, 0]
            for box, phrase in zip(result.xyxy, result.prompt_phrases)
            if phrase == shape.name
        ]
        assert max(hits, default=0) >= 0.7, (shape.name, result.xyxy, result.prompt_phrases)
    base = S.load_shapes_pipeline()
    assert tuned.model_version(Options()) != base.model_version(Options())


def test_projects_that_cannot_train_get_a_sentence(label_studio, toy_env, tmp_path, capsys):
    empty = label_studio.create_project(CONFIG, title="finetune empty")
    label_studio.import_tasks(empty, [{"image": "/data/upload/none.png"}])
    assert main(["--project", str(empty), "--out", str(tmp_path / "a")]) == 2
    assert f"Project {empty} has no submitted annotations" in capsys.readouterr().err

    strangers = label_studio.create_project(CONFIG, title="finetune strangers")
    image, shapes = S.make_scene(np.random.default_rng(1), shapes=[("yellow", "square")])
    (task,) = label_studio.import_local_files(strangers, {"y.png": _png(image)}, folder=f"finetune{strangers}")
    label_studio.api(
        "POST", f"/api/tasks/{task}/annotations/", json={"result": [rectangle_result(shapes[0].xyxy, "yellow")]}
    )
    assert main(["--project", str(strangers), "--out", str(tmp_path / "b")]) == 2
    error = capsys.readouterr().err
    assert "No annotated object" in error and "'yellow'" in error and "red square" in error

    broken = label_studio.create_project(CONFIG, title="finetune broken")
    (task,) = label_studio.import_local_files(broken, {"x.png": b"not an image"}, folder=f"finetune{broken}")
    label_studio.api(
        "POST", f"/api/tasks/{task}/annotations/", json={"result": [rectangle_result([1, 1, 9, 9], LABELS[0])]}
    )
    assert main(["--project", str(broken), "--out", str(tmp_path / "c")]) == 2
    assert "has an image that could be used" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_saves_the_state_and_the_same_command_resumes_from_it(label_studio, toy_env, tmp_path, capsys):
    import torch

    project = _annotated_project(label_studio)
    out = tmp_path / "tuned"
    command = [sys.executable, "-m", "sync.finetune", "--project", str(project), "--out", str(out)]
    run = subprocess.Popen(
        [*command, "--steps", "5000", "--save-every", "1"],
        env={**os.environ, **toy_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / STATE_FILE).exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 130, stderr
    assert "Interrupted at step" in stdout and "Run the same command again to resume" in stdout
    assert not (out / "README.md").exists()  # nothing but the state is written by an interrupted run
    stopped = torch.load(out / STATE_FILE, weights_only=True)["step"]
    assert 1 <= stopped < 5000

    assert main(["--project", str(project), "--out", str(out), "--steps", str(stopped + 2)]) == 0
    text = capsys.readouterr().out
    assert f"{stopped + 2} steps (resumed at step {stopped})" in text
    assert torch.load(out / STATE_FILE, weights_only=True)["step"] == stopped + 2
    assert f"steps: {stopped + 2} " in (out / "README.md").read_text()
    assert main(["--project", str(project), "--out", str(out), "--steps", "1"]) == 0
    assert f"already trained for {stopped + 2} steps" in capsys.readouterr().out
    assert main(["--project", str(project), "--out", str(out), "--holdout", "0.5"]) == 2
    assert "holds a fine-tune of project" in capsys.readouterr().err


def test_the_shared_training_loop_lowers_the_loss_on_a_fixed_batch(model_paths):
    """``pipeline.training`` (the toy trainer's and sync.finetune's one loop): a few steps on one batch fit it."""
    import torch
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    from pipeline import training

    detector_dir, _ = model_paths
    model = AutoModelForZeroShotObjectDetection.from_pretrained(detector_dir)
    processor = AutoProcessor.from_pretrained(detector_dir)
    torch.manual_seed(0)
    text = processor.tokenizer(["a cat."], return_tensors="pt")
    inputs = {
        "pixel_values": torch.randn(1, 3, 160, 160),
        "pixel_mask": torch.ones(1, 160, 160, dtype=torch.long),
        **text,
    }
    labels = [{"class_labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.4]])}]
    optimizer, schedule = training.optimizer_for(model, 1e-3, 0.0, steps=8, warmup=1)
    losses = []
    done = training.train_steps(
        model, lambda step: (inputs, labels), optimizer, schedule, steps=8, after_step=lambda s, v: losses.append(v)
    )
    assert done == 8 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-2:]) < 0.5 * losses[0], losses
