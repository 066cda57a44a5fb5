"""Per-label box thresholds: checked once in ``Options``, written in the prompt (``cat@0.4``), named in the model
version, and applied by re-filtering the detector's cached raw output (no model run)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from pipeline import Options, PromptError, SettingsError, model_version, parse_prompt
from pipeline.options import label_thresholds
from pipeline.registry import resolve_detector
from pipeline.testing import shapes as S
from tests.counting import count_calls

PROMPT = "red square. blue circle. green triangle"


def test_per_label_thresholds_are_checked_and_kept_as_sorted_pairs():
    assert Options(label_thresholds={"dog": 0.5, "cat": 0.4}).label_thresholds == (("cat", 0.4), ("dog", 0.5))
    assert label_thresholds(["cat=0.4, dog = 0.5", "brown dog@0.3"]) == (("brown dog", 0.3), ("cat", 0.4), ("dog", 0.5))
    options = Options(0.3, label_thresholds="cat=0.6")
    assert (options.threshold_for("cat"), options.threshold_for("dog"), options.threshold_for(None)) == (0.6, 0.3, 0.3)
    assert options.lowest_threshold == 0.3 and Options(0.3, label_thresholds="cat=0.1").lowest_threshold == 0.1
    assert hash(options) == hash(Options(0.3, label_thresholds=[("cat", 0.6)]))
    with pytest.raises(SettingsError, match="The box threshold of label 'cat' must be a number from 0 to 1, got 1.5"):
        Options(label_thresholds={"cat": 1.5})
    with pytest.raises(SettingsError, match="write label=threshold, e.g. cat=0.4"):
        Options(label_thresholds="cat 0.4")
    with pytest.raises(SettingsError, match="got 'high'"):
        Options(label_thresholds="cat=high")


def test_per_label_thresholds_and_prompt_thresholds_are_part_of_the_model_version():
    spec = resolve_detector("IDEA-Research/grounding-dino-tiny")
    plain = model_version(spec, Options(0.3))
    assert plain == "groundlabel-grounding-dino-tiny-box0.3-text0.25"  # short when none is set
    per_label = model_version(spec, Options(0.3, label_thresholds="cat=0.4"))
    assert per_label.startswith(plain + "-lt") and len(per_label) == len(plain) + 9
    assert per_label != model_version(spec, Options(0.3, label_thresholds="cat=0.5"))
    assert model_version(spec, Options(0.3), parse_prompt("cat@0.4")) != model_version(
        spec, Options(0.3), parse_prompt("cat")
    )


def test_a_phrase_ending_in_at_a_number_sets_its_box_threshold():
    prompt = parse_prompt("cat@0.4. brown dog:dog@.5, possum")
    assert prompt.phrases == ("cat", "brown dog", "possum") and prompt.text == "cat. brown dog. possum."
    assert prompt.thresholds == {"cat": 0.4, "brown dog": 0.5} and prompt.explicit_labels == {"brown dog": "dog"}
    assert parse_prompt("a. b").thresholds == {}
    for wrong in ("cat@high", "cat@1.5", "cat@"):
        with pytest.raises(PromptError, match='the box threshold after "@" must be a number from 0 to 1'):
            parse_prompt(wrong)


@pytest.fixture(scope="module")
def toy():
    pipeline = S.load_shapes_pipeline()
    rng = np.random.default_rng(5)
    images = []
    for _ in range(4):
        image, _ = S.make_scene(rng, shapes=[("red", "square"), ("blue", "circle"), ("green", "triangle")])
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        images.append(buffer.getvalue())
    return pipeline, images


def _rows(result) -> list[tuple]:
    return [
        (label, round(float(s), 5), tuple(np.round(b, 2)))
        for label, s, b in zip(result.labels, result.scores, result.xyxy)
    ]


def test_a_labels_own_threshold_refilters_the_cached_output_without_a_model_run(toy):
    pipeline, images = toy
    everything = pipeline.batch(images, PROMPT, Options(0.02, nms_threshold=1.0))  # the one model run
    wanted = {"red square": 0.6, "blue circle": 0.02}
    typed_prompt = "red square@0.6. blue circle@0.02. green triangle"
    with count_calls(pipeline.detector.model) as forwards:
        per_label = pipeline.batch(images, PROMPT, Options(0.05, nms_threshold=1.0, label_thresholds=wanted))
        typed = pipeline.batch(images, typed_prompt, Options(0.05, nms_threshold=1.0))
    assert forwards.count == 0
    for every, mine, from_prompt in zip(everything, per_label, typed):
        assert _rows(mine) == [r for r in _rows(every) if r[1] > wanted.get(r[0], 0.05)]
        assert _rows(from_prompt) == _rows(mine)
    rows = [r for result in everything for r in _rows(result)]
    assert any(r[0] == "red square" and 0.05 < r[1] <= 0.6 for r in rows)  # its own threshold dropped these
    assert any(r[0] == "blue circle" and 0.02 < r[1] <= 0.05 for r in rows)  # ... and let these in


def test_the_command_line_takes_per_label_thresholds_and_names_them_in_the_version(toy, tmp_path, monkeypatch):
    from pipeline.__main__ import main

    pipeline, images = toy
    (tmp_path / "scene.png").write_bytes(images[0])
    monkeypatch.setenv("GROUNDLABEL_INPUT_SIZE", str(S.SHAPES_INPUT_SIZE))
    argv = [
        "--prompt",
        PROMPT,
        "--detector",
        str(S.shapes_detector_dir()),
        "--device",
        "cpu",
        "--box-threshold",
        "0.05",
    ]
    asked = Options(0.05, label_thresholds={"red square": 0.999, "blue circle": 0.5})
    wanted = pipeline(images[0], PROMPT, asked)
    assert len(wanted) < len(pipeline(images[0], PROMPT, Options(0.05)))  # the thresholds change the answer

    out = tmp_path / "out"
    argv += ["--label-threshold", "red square=0.999", "--label-threshold", "blue circle=0.5", "--out", str(out)]
    assert main([str(tmp_path / "scene.png"), *argv]) == 0
    written = json.loads((out / "scene.groundlabel.json").read_text())
    assert written["model_version"] == wanted.model_version and "-lt" in wanted.model_version
    assert [(d["label"], d["score"]) for d in written["detections"]] == [
        (label, round(float(score), 4)) for label, score in zip(wanted.labels, wanted.scores)
    ]
    assert main([str(tmp_path / "scene.png"), *argv, "--label-threshold", "cat=2"]) == 2  # one line, no traceback
