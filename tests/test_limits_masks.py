"""Memory per request with masks: the cap on detections that get masks (and its sentence, shown by the UI and the
command lines), and the decoder's chunks."""

from __future__ import annotations

import html
from dataclasses import replace

import numpy as np
import pytest

from pipeline import LabelMap, MaskPrompt, Options, PipelineSettings, SettingsError, load_image
from pipeline.__main__ import detect_all
from pipeline.segmenter import DECODE_CHUNK, decode_chunk
from pipeline.testing.models import load_tiny_pipeline
from tests.counting import count_calls

PROMPT = "brown dog. possum on a fence"


@pytest.fixture
def fresh(model_paths):
    return load_tiny_pipeline(*model_paths)


def test_only_the_highest_scoring_detections_get_masks_and_the_result_says_so(fresh, photo):
    everything = fresh(photo, PROMPT, Options(0.0, 0.0, "sam_tiny_test", max_masks=1000))
    assert len(everything) > 8 and not everything.notes  # under the cap: every box has its mask, no sentence
    capped = fresh(photo, PROMPT, Options(0.0, 0.0, "sam_tiny_test", max_masks=5))
    order = np.argsort(-everything.scores, kind="stable")
    assert len(capped) == len(everything)  # the rest stay boxes
    assert np.array_equal(capped.scores, everything.scores[order])
    assert np.array_equal(capped.masks[:5], everything.masks[order[:5]])
    assert capped.masks[:5].any(axis=(1, 2)).all() and not capped.masks[5:].any()
    assert capped.notes == (
        f"Masks were made for the 5 highest-scoring of {len(everything)} detections; the other "
        f"{len(everything) - 5} are boxes only (raise the box threshold, or GROUNDLABEL_MAX_MASKS / "
        "GROUNDLABEL_MASK_MEMORY_MB for more masks).",
    )


def test_the_cap_comes_from_the_settings_and_shrinks_on_large_images(fresh, photo):
    image = load_image(photo)
    fresh.settings = replace(fresh.settings, max_masks=7)
    assert fresh.mask_limit(image) == 7 and fresh.mask_limit(image, 3) == 3
    fresh.settings = replace(fresh.settings, mask_memory=4 * 640 * 480)  # room for four 640x480 masks
    assert fresh.mask_limit(image) == 4 and fresh.mask_limit(image, 3) == 3
    result = fresh(photo, PROMPT, Options(0.0, 0.0, "sam_tiny_test"))
    assert int(result.masks.any(axis=(1, 2)).sum()) <= 4 and "the 4 highest-scoring" in result.notes[0]
    environ = {"GROUNDLABEL_MAX_MASKS": "12", "GROUNDLABEL_MASK_MEMORY_MB": "64"}
    assert (PipelineSettings.from_env(environ).max_masks, PipelineSettings.from_env(environ).mask_memory) == (
        12,
        64 << 20,
    )
    with pytest.raises(SettingsError, match="at least 1"):
        Options(max_masks=0)


@pytest.mark.slow  # many model runs: the slow tier (tests/conftest.py)
def test_the_decoder_runs_in_chunks_that_shrink_with_the_image(fresh, photo):
    chunk = decode_chunk(640, 480)
    assert 8 < chunk <= DECODE_CHUNK and decode_chunk(4000, 3000) == 3 and decode_chunk(20000, 20000) == 1
    segmenter = fresh.segmenters.get("sam_tiny_test")
    image = load_image(photo)
    prompts = [MaskPrompt((x, 10, x + 100, 200)) for x in range(0, 400, 10)]  # 40 boxes
    looped = segmenter.decode(image, prompts, batched=False)
    segmenter._masks.clear()
    sizes = []
    decoder = segmenter.predictor.model.mask_decoder
    handle = decoder.register_forward_pre_hook(
        lambda _, args, kwargs: sizes.append(len(kwargs["sparse_prompt_embeddings"])), with_kwargs=True
    )
    try:
        chunked = segmenter.decode(image, prompts)
    finally:
        handle.remove()
    assert sizes == [chunk] * (40 // chunk) + [40 % chunk]
    assert min((a == b).mean() for a, b in zip(looped, chunked)) > 0.999
    with count_calls(decoder) as calls:  # cached now: no decoder call, and ``out`` receives the masks
        out = np.zeros((40, 480, 640), bool)
        assert segmenter.decode(image, prompts, out=out) is out and np.array_equal(out, chunked)
    assert calls.count == 0


def test_the_mask_cap_sentence_is_shown_by_the_ui_and_python_m_pipeline(fresh, photo, capsys):
    from ui.detections import Query, summary

    options = Options(0.0, 0.0, "sam_tiny_test", max_masks=5)
    capped = fresh(photo, PROMPT, options)
    (note,) = capped.notes
    # the playground's result message and the Label Studio tab's status line are both this summary (ui.detections.said)
    assert html.escape(note) in summary(capped, Query(load_image(photo), "photo.png", PROMPT, options), 0.1, 0.0, 0.0)
    assert len(list(detect_all(fresh, [photo], PROMPT, options, LabelMap(), []))) == 1
    assert f": {note}\n" in capsys.readouterr().out


def test_sync_prelabel_names_the_tasks_whose_masks_were_cut(label_studio, ls_client, fresh, tmp_path):
    from sync import Outbox
    from sync.prelabel import PrelabelJob, prelabel
    from tests.labelstudio import png

    project = label_studio.create_project()
    tasks = label_studio.upload_images(project, {"a.png": png(64, 48, seed=1)})
    fresh.settings = replace(fresh.settings, max_masks=1)
    progress = prelabel(
        ls_client, fresh, PrelabelJob(project, PROMPT, Options(0.0, 0.0, "sam_tiny_test")), Outbox(tmp_path)
    )
    assert progress.done == 1 and list(progress.notes) == tasks
    assert f"task {tasks[0]}: Masks were made for the 1 highest-scoring of" in progress.summary()
