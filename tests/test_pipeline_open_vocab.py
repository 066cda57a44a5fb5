"""OWLv2, OmDet-Turbo and SAM 3 (text -> boxes + masks) through the product's loader, pipeline, CLI and ML backend,
each a tiny random model of the real architecture: their boxes equal transformers' own post-processing, thresholds
re-filter cached outputs without a model run, and SAM 3 reuses an image's features for a new prompt."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import DETECTORS, GroundingPipeline, Options, PipelineSettings, PromptError, parse_prompt
from pipeline.families import reads_text_threshold
from pipeline.registry import FAMILIES
from tests.counting import count_calls

PROMPT = "red square. blue ball"
PHRASE_FAMILIES = [name for name, family in FAMILIES.items() if not family.reads_text_threshold]  # whole phrases


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("open-vocab")
    return {family: FAMILIES[family].save_random(root / family) for family in PHRASE_FAMILIES}


@pytest.fixture(scope="module")
def pipelines(model_dirs):
    return {
        family: GroundingPipeline.from_settings(PipelineSettings(detector=str(path), device="cpu", offline=True))
        for family, path in model_dirs.items()
    }


def _reference(detector, photo: np.ndarray, phrases: list[str]):
    """transformers' own processor -> model -> post-processing for one image, at threshold 0."""
    processor, model, height, width = detector.processor, detector.model, *photo.shape[:2]
    with torch.inference_mode():
        if type(model).__name__ == "Owlv2ForObjectDetection":
            out = model(**processor(images=Image.fromarray(photo), text=[phrases], return_tensors="pt"))
            return processor.post_process_grounded_object_detection(out, 0.0, [(height, width)])[0]
        out = model(**processor(images=Image.fromarray(photo), text=phrases, return_tensors="pt"))
        return processor.post_process_grounded_object_detection(out, phrases, 0.0, target_sizes=[(height, width)])[0]


def test_the_new_detectors_are_registered_with_hub_ids_licences_and_no_text_threshold():
    assert DETECTORS["owlv2-base"].source == "google/owlv2-base-patch16-ensemble"
    assert DETECTORS["omdet-turbo"].source == "omlab/omdet-turbo-swin-tiny-hf"
    assert DETECTORS["sam3"].source == "facebook/sam3" and DETECTORS["sam3"].gated
    for name in ("owlv2-base", "omdet-turbo", "sam3"):
        assert DETECTORS[name].licence and not reads_text_threshold(name)
    assert reads_text_threshold("grounding-dino-tiny") and reads_text_threshold("mm-grounding-dino-tiny")


# nms_threshold=1.0 keeps every box: these compare with transformers' own output, which has no duplicate suppression
@pytest.mark.parametrize("portrait", [False, True], ids=["landscape", "portrait"])
@pytest.mark.parametrize("family", ["owlv2", "omdet-turbo"])
def test_phrase_detectors_give_transformers_boxes_and_ignore_the_text_threshold(pipelines, family, photo, portrait):
    pipeline = pipelines[family]
    photo = np.ascontiguousarray(photo.transpose(1, 0, 2)) if portrait else photo  # OWLv2 pads to the longer side
    result = pipeline(photo, PROMPT, Options(0.0, 0.0, nms_threshold=1.0))
    reference = _reference(pipeline.detector, photo, ["red square", "blue ball"])
    order = np.argsort(-result.scores)
    expected = reference["boxes"].numpy().copy()
    expected[:, [0, 2]] = expected[:, [0, 2]].clip(0, photo.shape[1])
    expected[:, [1, 3]] = expected[:, [1, 3]].clip(0, photo.shape[0])
    by_score = np.argsort(-reference["scores"].numpy())
    assert len(result) == len(reference["scores"]) > 0
    np.testing.assert_allclose(result.scores[order], reference["scores"].numpy()[by_score], atol=1e-5)
    np.testing.assert_allclose(result.xyxy[order], expected[by_score], atol=1e-3)
    assert [result.prompt_phrases[i] for i in order] == [
        ["red square", "blue ball"][int(k)] for k in reference["labels"][by_score]
    ]
    assert result.phrases == result.prompt_phrases  # whole phrases: no words picked by a text threshold
    assert pipeline(photo, PROMPT, Options(0.0, 0.9, nms_threshold=1.0)).xyxy.tolist() == result.xyxy.tolist()


def test_omdet_turbo_suppresses_overlapping_boxes_per_phrase_as_transformers_does(pipelines):
    """Random weights give boxes that hardly overlap, so raw outputs with overlapping boxes are made here: NMS per
    phrase must drop the same ones transformers' post-processing drops, and keep overlaps of different phrases."""
    from types import SimpleNamespace

    from pipeline.detector import RawDetections

    detector = pipelines["omdet-turbo"].detector
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20, 2, generator=generator) * 2
    boxes = (torch.tensor([0.5, 0.5, 0.3, 0.3]) + 0.03 * torch.randn(20, 4, generator=generator)).clamp(0.05, 0.95)
    tokens = detector.tokenize(parse_prompt(PROMPT))
    mine = detector.postprocess(RawDetections(logits, boxes, tokens), 320, 240, Options(0.05, 0.0))
    outputs = SimpleNamespace(
        decoder_coord_logits=boxes[None], decoder_class_logits=logits[None], classes_structure=torch.tensor([2])
    )
    theirs = detector.processor.post_process_grounded_object_detection(
        outputs, threshold=0.05, target_sizes=[(240, 320)]
    )[0]
    assert len(mine.scores) == len(theirs["scores"])
    assert len(mine.scores) in range(2, 20)  # NMS dropped some and kept at least one per phrase
    order = np.argsort(-theirs["scores"].numpy())
    np.testing.assert_allclose(mine.scores, theirs["scores"].numpy()[order], atol=1e-6)
    np.testing.assert_allclose(mine.xyxy, theirs["boxes"].numpy()[order], atol=1e-3)
    assert mine.phrase_index.tolist() == theirs["labels"].numpy()[order].tolist()


@pytest.mark.parametrize("family", ["owlv2", "omdet-turbo", "sam3"])
def test_a_new_box_threshold_runs_no_model(pipelines, family, photo):
    pipeline = pipelines[family]
    everything = pipeline(photo, PROMPT, Options(0.0, 0.0, nms_threshold=1.0))
    threshold = float(np.median(everything.scores))
    model = pipeline.detector.model
    # OWLv2 runs its parts (cached vision features, then its heads), never its whole forward: count its class head
    with count_calls(model.class_head if family == "owlv2" else model) as forwards:
        fewer = pipeline(photo, PROMPT, Options(threshold, 0.0, nms_threshold=1.0))
    assert forwards.count == 0
    assert 0 < len(fewer) < len(everything) and (fewer.scores > threshold).all()


def test_owlv2_refuses_a_phrase_longer_than_it_reads(pipelines, photo):
    with pytest.raises(PromptError, match="at most 16"):
        pipelines["owlv2"](photo, "a " * 20 + "dog", Options(0.0, 0.0))


def test_sam3_gives_transformers_boxes_scores_and_masks_per_phrase(pipelines, photo):
    from pipeline.sam3 import SCORE_FLOOR

    pipeline = pipelines["sam3"]
    result = pipeline(photo, PROMPT, Options(0.0, 0.0, "mobile_sam", nms_threshold=1.0))
    assert "+masks-" in result.model_version  # SAM 3 made the masks, not the segmenter named
    assert not pipeline.segmenters.loaded
    processor, model, height, width = pipeline.detector.processor, pipeline.detector.model, *photo.shape[:2]
    for number, phrase in enumerate(["red square", "blue ball"]):
        with torch.inference_mode():
            out = model(**processor(images=Image.fromarray(photo), text=phrase, return_tensors="pt"))
        expected = processor.post_process_instance_segmentation(out, SCORE_FLOOR, target_sizes=[(height, width)])[0]
        mine = [i for i, p in enumerate(result.prompt_phrases) if p == phrase]
        assert len(mine) == len(expected["scores"]) > 0
        np.testing.assert_allclose(result.scores[mine], expected["scores"].numpy(), atol=1e-5)
        boxes = expected["boxes"].numpy().clip(0, [width, height, width, height])
        np.testing.assert_allclose(result.xyxy[mine], boxes, atol=1e-3)
        # phrases decoded as one batch differ from one-by-one in the 9th digit: a pixel at exactly 0.5 may flip
        assert (result.masks[mine] != expected["masks"].numpy().astype(bool)).mean() < 1e-5
        assert number == 0 or mine[0] > 0


def test_sam3_reuses_an_images_features_for_a_new_prompt(pipelines, photo):
    pipeline = pipelines["sam3"]
    detector = pipeline.detector
    pipeline(photo, "blue ball", Options(0.2, 0.0))
    with count_calls(detector.model.vision_encoder) as encoder, count_calls(detector.model) as forwards:
        pipeline(photo, "green pyramid. cat", Options(0.2, 0.0))
    assert encoder.count == 0 and forwards.count == 1  # both phrases in one decoder pass, no vision encoder


@pytest.mark.parametrize("family", ["owlv2", "omdet-turbo", "sam3"])
def test_the_cli_runs_each_family_from_a_directory(model_dirs, pipelines, family, photo, tmp_path):
    """SAM 3 with --masks: its own masks (MobileSAM, named, has no weights on this machine and is not needed)."""
    import json

    from pipeline.__main__ import main

    Image.fromarray(photo).save(tmp_path / "yard.png")
    masks = ["--masks", "mobile_sam"] if family == "sam3" else []
    code = main(
        [
            str(tmp_path / "yard.png"),
            "--prompt",
            PROMPT,
            "--detector",
            str(model_dirs[family]),
            "--box-threshold",
            "0.0",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
            *masks,
        ]
    )
    assert code == 0
    written = json.loads((tmp_path / "out" / "yard.groundlabel.json").read_text())["detections"]
    expected = pipelines[family](photo, PROMPT, Options(0.0, 0.25, "mobile_sam" if masks else None))
    assert len(written) == len(expected) > 0
    np.testing.assert_allclose([d["box_xyxy"] for d in written], expected.xyxy, atol=0.01)
    assert [d["phrase"] for d in written] == expected.phrases
    if masks:
        assert [d["mask_area"] for d in written] == [int(m.sum()) for m in expected.masks]


@pytest.mark.parametrize("family", ["owlv2", "omdet-turbo"])
def test_phrase_detectors_answer_label_studio_with_rectangles_of_the_projects_labels(
    label_studio, pipelines, family, tmp_path
):
    from sync import BackendSettings, box_to_pixels
    from tests.labelstudio import interactive_answer, png

    pipeline, image = pipelines[family], png(96, 72, seed=7)
    settings = BackendSettings(box_threshold=0.0, text_threshold=0.9, segmenter=None, state_dir=tmp_path)
    answer = interactive_answer(label_studio, pipeline, settings, image, "cats")
    expected = pipeline(image, "cats", Options(0.0, 0.9))
    boxes = [r for r in answer["result"] if r["type"] == "rectanglelabels"]
    assert len(boxes) == len(expected) > 0 and {r["value"]["rectanglelabels"][0] for r in boxes} == {"cats"}
    for region, xyxy in zip(boxes, expected.xyxy):
        np.testing.assert_allclose(box_to_pixels(region), xyxy, atol=1e-3)


def test_sam3_regions_reach_label_studio_as_brush_masks_and_rectangles_with_the_projects_labels(
    label_studio, pipelines, tmp_path
):
    from sync import BackendSettings, box_to_pixels, rle_to_mask
    from tests.labelstudio import interactive_answer, png

    pipeline = pipelines["sam3"]
    image = png(96, 72, seed=5)
    settings = BackendSettings(box_threshold=0.0, text_threshold=0.0, segmenter="mobile_sam", state_dir=tmp_path)
    answer = interactive_answer(label_studio, pipeline, settings, image, "cats")
    expected = pipeline(image, "cats", Options(0.0, 0.0, "mobile_sam"))
    boxes = [r for r in answer["result"] if r["type"] == "rectanglelabels"]
    brushes = [r for r in answer["result"] if r["type"] == "brushlabels"]
    assert len(boxes) == len(brushes) == len(expected) > 0
    assert "+masks-" in answer["model_version"]
    for box, brush, xyxy, mask in zip(boxes, brushes, expected.xyxy, expected.masks):
        assert box["value"]["rectanglelabels"] == brush["value"]["brushlabels"] == ["cats"]
        np.testing.assert_allclose(box_to_pixels(box), xyxy, atol=1e-3)
        np.testing.assert_array_equal(rle_to_mask(brush), mask)


def test_a_gated_model_without_access_says_how_to_get_it(tmp_path):
    """The Hub answers 401 GatedRepo (as for facebook/sam3 without an accepted access request): the sentence names
    the model page and HF_TOKEN."""
    import os
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Gated(BaseHTTPRequestHandler):
        def _deny(self):
            self.send_response(401)
            self.send_header("X-Error-Code", "GatedRepo")
            self.send_header("X-Error-Message", "Access to model facebook/sam3 is restricted.")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = _deny

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gated)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
        "HF_HOME": str(tmp_path),
        "GROUNDLABEL_OFFLINE": "",
        "HF_HUB_OFFLINE": "0",
        "HF_TOKEN": "hf_not_a_real_token",
    }
    code = (
        "from pipeline import GroundingPipeline, PipelineSettings, WeightsError\n"
        "try:\n GroundingPipeline.from_settings(PipelineSettings(detector='sam3', device='cpu'))\n"
        "except WeightsError as error:\n print(error)\n"
    )
    try:
        said = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=os.getcwd()
        ).stdout
    finally:
        server.shutdown()
    assert "'facebook/sam3' is gated" in said and "https://huggingface.co/facebook/sam3" in said, said
    assert "HF_TOKEN" in said and "hf_not_a_real_token" not in said


@pytest.fixture(scope="module")
def every_model(tmp_path_factory):
    """``python -m pipeline.testing write --all``'s models and environment."""
    from pipeline.testing.models import write_all

    return write_all(tmp_path_factory.mktemp("every"), "tiny", every=True)


def test_every_registered_model_loads_offline_from_its_variable_and_runs(every_model, photo):
    from pipeline import SEGMENTERS, MaskPrompt, load_image

    settings = PipelineSettings.from_env(every_model)
    pipeline = GroundingPipeline.from_settings(settings)
    for name in DETECTORS:
        result = pipeline(photo, PROMPT, Options(0.0, 0.0, detector=name))
        assert len(result) > 0 and set(result.prompt_phrases) <= {"red square", "blue ball"}, name
        assert pipeline.detector_for(Options(detector=name)).model_id == every_model[DETECTORS[name].env_var]
    image = load_image(photo)
    for name in [name for name, spec in SEGMENTERS.items() if spec.hub] + ["mobile_sam"]:
        (mask,) = pipeline.segmenters.get(name).decode(image, [MaskPrompt.from_box((10, 10, 200, 150))])
        assert mask.shape == (480, 640), name


def test_the_model_listing_names_the_new_detectors_and_their_variables(capsys):
    from pipeline.__main__ import main

    assert main(["--models"]) == 0
    listing = capsys.readouterr().out
    for name, source in [
        ("owlv2-base", "google/owlv2-base-patch16-ensemble"),
        ("omdet-turbo", "omlab/omdet-turbo-swin-tiny-hf"),
        ("sam3", "facebook/sam3"),
    ]:
        line = next(line for line in listing.splitlines() if line.split()[1:2] == [name])
        assert source in line and DETECTORS[name].env_var in line


def test_health_says_the_detector_ignores_the_text_threshold(pipelines, model_dirs, tmp_path):
    import httpx

    from pipeline import LazyPipeline
    from sync import BackendSettings
    from tests.labelstudio import backend_app, serve

    with serve(backend_app(LazyPipeline(pipeline=pipelines["owlv2"]), BackendSettings(state_dir=tmp_path))) as url:
        models = httpx.get(f"{url}/health", timeout=10).json()["models"]
    assert models["reads_text_threshold"] is False and "TEXT_THRESHOLD" in models["text_threshold_note"]
    before_loading = LazyPipeline(PipelineSettings(detector="omdet-turbo", offline=True)).status()
    assert before_loading["loaded"] is False and before_loading["reads_text_threshold"] is False
    assert LazyPipeline(PipelineSettings(offline=True)).status()["reads_text_threshold"] is True
