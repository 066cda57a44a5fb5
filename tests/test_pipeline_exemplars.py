"""Exemplar prompts: example boxes instead of (or beside) text, on a tiny random OWLv2 through the product's loader
and pipeline. Its boxes equal transformers' own ``image_guided_detection``; a new example on a cached image runs no
vision encoder; a query made on one image finds on another; detectors without exemplar search and unusable boxes
are refused in a sentence."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from pipeline import (
    Exemplar,
    ExemplarError,
    ExemplarQuery,
    GroundingPipeline,
    Options,
    PipelineSettings,
    load_image,
    parse_prompt,
)
from pipeline.registry import FAMILIES
from tests.counting import count_calls

EVERY_BOX = Options(0.0, 0.0, nms_threshold=1.0)  # transformers has no class-aware NMS: keep every box


@pytest.fixture(scope="module")
def owl(tmp_path_factory) -> GroundingPipeline:
    directory = FAMILIES["owlv2"].save_random(tmp_path_factory.mktemp("exemplars") / "owlv2")
    return GroundingPipeline.from_settings(PipelineSettings(detector=str(directory), device="cpu", offline=True))


def _picture(seed: int, width: int, height: int):
    rng = np.random.default_rng(seed)
    return load_image(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _chosen_box(owl: GroundingPipeline, reference) -> tuple[np.ndarray, np.ndarray]:
    """transformers' own choice of query on ``reference`` (``embed_image_query``: the most object-like predicted
    box): that box in the reference image's pixels, and its class embedding."""
    model = owl.detector.model
    pixels = owl.detector.processor(images=reference.pil, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        feature_map = model.image_embedder(pixel_values=pixels)[0]
        embeds, index, boxes = model.embed_image_query(feature_map.reshape(1, -1, feature_map.shape[-1]), feature_map)
    cx, cy, w, h = (boxes[0, int(index)] * max(reference.width, reference.height)).tolist()
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]), embeds[0, 0].numpy()


@pytest.mark.parametrize("where", ["another image", "the image searched"])
def test_an_example_box_finds_what_transformers_image_guided_detection_finds(owl, photo, where):
    """transformers' ``image_guided_detection`` takes a whole query image and picks its query itself (the predicted
    box of highest objectness); ours takes a drawn box. Drawing exactly the box transformers picks, our box matching
    must pick the same one, so compared are: the query embedding (with ``embed_image_query``'s), the raw scores and
    boxes of every patch on the target, and ``post_process_image_guided_detection``'s kept boxes and scores (which
    it rescales so the best is 1: ours are rescaled the same way for the comparison)."""
    query_image = _picture(1, 96, 96)  # square: the chosen box cannot lie in padding only
    target = load_image(photo) if where == "another image" else query_image
    box, expected_embedding = _chosen_box(owl, query_image)
    exemplar = Exemplar(tuple(box), "thing", image=query_image if where == "another image" else None)

    query = owl.detector.embed_exemplar(exemplar, target)
    np.testing.assert_allclose(query.vector, expected_embedding, atol=1e-5)

    processor, model = owl.detector.processor, owl.detector.model
    with torch.inference_mode():
        out = model.image_guided_detection(
            **processor(images=target.pil, query_images=query_image.pil, return_tensors="pt")
        )
    prompt = parse_prompt("", [exemplar])
    everything = owl(target, prompt, EVERY_BOX)
    scores = out.logits[0].max(dim=-1).values.sigmoid().numpy()
    side = max(target.width, target.height)
    cx, cy, w, h = out.target_pred_boxes[0].numpy().T * side
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).clip(
        0, [target.width, target.height] * 2
    )
    assert len(everything) == len(scores) == 16 and set(everything.labels) == {"thing"}
    mine, theirs = np.argsort(-everything.scores), np.argsort(-scores)
    np.testing.assert_allclose(everything.scores[mine], scores[theirs], atol=1e-5)
    np.testing.assert_allclose(everything.xyxy[mine], boxes[theirs], atol=1e-3)

    ranked = np.sort(scores)
    threshold = float(ranked[8] + ranked[9]) / 2  # between two scores: their ">=" and our ">" keep the same boxes
    post = processor.post_process_image_guided_detection(
        out, threshold=threshold, nms_threshold=1.0, target_sizes=torch.tensor([[target.height, target.width]])
    )[0]
    kept = owl(target, prompt, Options(threshold, 0.0, nms_threshold=1.0))
    best = kept.scores.max() + 1e-6
    alphas = np.clip((kept.scores - 0.1 * best) / (0.9 * best), 0.0, 1.0)
    shown, order = alphas > 0, np.argsort(-post["scores"].numpy())
    by_alpha = np.argsort(-alphas[shown])
    assert 0 < shown.sum() == len(post["scores"])
    np.testing.assert_allclose(alphas[shown][by_alpha], post["scores"].numpy()[order], atol=1e-5)
    expected = post["boxes"].numpy().clip(0, [target.width, target.height] * 2)[order]
    np.testing.assert_allclose(kept.xyxy[shown][by_alpha], expected, atol=1e-3)


def test_an_example_box_stands_for_the_predicted_box_it_overlaps(owl, photo):
    """Drawing each of the model's own predicted boxes (none overlaps another by 80 % IoU here) gives that box's class
    embedding as the query: the box matching, not the objectness alone, picks it."""
    from torchvision.ops import box_convert, box_iou

    image, model = load_image(photo), owl.detector.model
    pixels = owl.detector.processor(images=image.pil, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        feature_map = model.image_embedder(pixel_values=pixels)[0]
        patches = feature_map.reshape(1, -1, feature_map.shape[-1])
        class_embeds = model.class_predictor(patches)[1][0].numpy()
        boxes = box_convert(model.box_predictor(patches, feature_map)[0], "cxcywh", "xyxy") * image.width
    overlaps = box_iou(boxes, boxes).fill_diagonal_(0)
    on_image = (boxes[:, 0] < image.width) & (boxes[:, 1] < image.height)
    alone = [k for k in range(len(boxes)) if overlaps[k].max() < 0.8 and on_image[k]]
    assert len(alone) >= 8
    for k in alone:
        query = owl.detector.embed_exemplar(Exemplar(tuple(boxes[k].tolist()), "thing"), image)
        np.testing.assert_allclose(query.vector, class_embeds[k], atol=1e-5)


def test_a_new_example_box_on_a_cached_image_runs_no_vision_encoder(owl, photo):
    target = load_image(photo)
    owl(target, "red square", Options(0.0))  # a text prompt caches the image's features
    encoder, heads = owl.detector.model.owlv2.vision_model, owl.detector.model.class_head
    with count_calls(encoder) as encoded, count_calls(heads) as scored:
        first = owl(target, parse_prompt("", [Exemplar((100, 100, 300, 250), "thing")]), Options(0.0))
        second = owl(target, parse_prompt("", [Exemplar((10, 20, 200, 400), "other")]), Options(0.0))
    assert encoded.count == 0 and scored.count >= 2  # the heads ran for both, the vision encoder for neither
    assert set(first.labels) == {"thing"} and set(second.labels) == {"other"}
    assert first.model_version != second.model_version  # the example box is part of the prompt's version


def test_a_query_made_on_one_image_finds_the_same_on_another(owl, photo):
    reference, target = _picture(2, 120, 80), load_image(photo)
    exemplar = Exemplar((20, 10, 90, 70), "bolt", image=reference)
    query = owl.detector.embed_exemplar(exemplar)
    kept = ExemplarQuery(**{**json.loads(json.dumps(asdict(query))), "vector": tuple(query.vector)})  # stored, read
    from_query = owl(target, parse_prompt("", [kept]), EVERY_BOX)
    from_box = owl(target, parse_prompt("", [exemplar]), EVERY_BOX)
    assert len(from_query) == 16 and set(from_query.labels) == {"bolt"}
    np.testing.assert_array_equal(from_query.scores, from_box.scores)
    np.testing.assert_array_equal(from_query.xyxy, from_box.xyxy)


def test_text_and_example_boxes_share_one_prompt_and_a_negative_example_takes_its_boxes_away(owl, photo):
    target = load_image(photo)
    liked, disliked = Exemplar((100, 100, 300, 250), "thing"), (20, 20, 140, 140)
    both = owl(target, parse_prompt("red square", [liked, Exemplar(disliked, "not it")]), EVERY_BOX)
    assert len(both) == 16 and {"red square", "thing", "not it"} == set(both.labels)
    against = owl(target, parse_prompt("red square", [liked, Exemplar(disliked, "thing", False)]), EVERY_BOX)
    # a box most like the negative example is dropped: what is left is what scored best on another query
    labels = np.array(both.labels)
    others = labels != "not it"
    assert len(against) == others.sum() < 16
    expected = zip(both.xyxy[others].tolist(), labels[others].tolist())
    assert sorted(zip(against.xyxy.tolist(), against.labels)) == sorted(expected)


@pytest.mark.parametrize("detector", ["grounding-dino-tiny", "mm-grounding-dino-tiny", "omdet-turbo"])
def test_a_detector_that_cannot_search_by_example_says_so(owl, detector):
    prompt = parse_prompt("dog", [Exemplar((1, 1, 20, 20), "dog")])
    with pytest.raises(ExemplarError) as refused:
        owl.check_prompt(prompt, Options(detector=detector))
    assert str(refused.value) == (
        f"{detector} cannot search by example boxes; pick OWLv2 (owlv2-base) or SAM 3 (sam3) as the detector, "
        "or search by text only."
    )


def test_unusable_example_boxes_are_refused_in_a_sentence(owl, photo):
    target = load_image(photo)
    with pytest.raises(ExemplarError, match=r"The example box \(10, 10, 10, 40\) for 'bolt' has no area"):
        Exemplar((10, 10, 10, 40), "bolt")
    outside = "The example box (700, 10, 720, 40) for 'bolt' lies outside the 640x480 image: draw it on the image."
    with pytest.raises(ExemplarError) as refused:
        Exemplar((700, 10, 720, 40), "bolt", image=target)
    assert str(refused.value) == outside
    with pytest.raises(ExemplarError) as refused:  # drawn for the image searched, checked against it
        owl(target, parse_prompt("", [Exemplar((700, 10, 720, 40), "bolt")]), Options())
    assert str(refused.value) == outside
    with pytest.raises(ExemplarError, match="Only negative example boxes"):
        parse_prompt("", [Exemplar((1, 1, 20, 20), "bolt", positive=False)])
    foreign = ExemplarQuery("another-model", (0.0,) * 32, "bolt")
    with pytest.raises(ExemplarError, match="was made by another-model, not by this detector"):
        owl(target, parse_prompt("", [foreign]), Options())


@pytest.fixture(scope="module")
def sam3(tmp_path_factory) -> GroundingPipeline:
    directory = FAMILIES["sam3"].save_random(tmp_path_factory.mktemp("exemplars") / "sam3")
    return GroundingPipeline.from_settings(PipelineSettings(detector=str(directory), device="cpu", offline=True))


@pytest.mark.parametrize("text", ["", "red square"], ids=["boxes only", "phrase and boxes"])
def test_sam3_example_boxes_give_transformers_visual_prompt_boxes_scores_and_masks(sam3, photo, text):
    """Our SAM 3 with a positive and a negative example box on the image searched against transformers' own
    processor (``input_boxes``, ``input_boxes_labels``; text "visual" for boxes only) -> model ->
    ``post_process_instance_segmentation``."""
    from pipeline.sam3 import SCORE_FLOOR

    liked, disliked = (100, 100, 300, 250), (400, 200, 600, 450)
    label = text or "thing"
    prompt = parse_prompt(text, [Exemplar(liked, label), Exemplar(disliked, label, positive=False)])
    result = sam3(photo, prompt, Options(0.0, 0.0, "mobile_sam", nms_threshold=1.0))
    processor, model, height, width = sam3.detector.processor, sam3.detector.model, *photo.shape[:2]
    inputs = processor(
        images=load_image(photo).pil,
        text=text or None,
        input_boxes=[[list(liked), list(disliked)]],
        input_boxes_labels=[[1, 0]],
        return_tensors="pt",
    )
    with torch.inference_mode():
        out = model(**inputs)
    expected = processor.post_process_instance_segmentation(out, SCORE_FLOOR, target_sizes=[(height, width)])[0]
    assert len(result) == len(expected["scores"]) > 0 and set(result.labels) == {label}
    np.testing.assert_allclose(result.scores, expected["scores"].numpy(), atol=1e-5)
    np.testing.assert_allclose(result.xyxy, expected["boxes"].numpy().clip(0, [width, height] * 2), atol=1e-3)
    assert (result.masks != expected["masks"].numpy().astype(bool)).mean() < 1e-5


def test_sam3_reads_example_boxes_on_the_image_searched_only_and_phrases_without_boxes_as_before(sam3, photo):
    elsewhere = Exemplar((10, 10, 50, 50), "bolt", image=_picture(3, 64, 64))
    with pytest.raises(ExemplarError, match="SAM 3 reads example boxes on the image searched only"):
        sam3(photo, parse_prompt("", [elsewhere]), Options())
    with pytest.raises(ExemplarError, match=r"lies outside the 640x480 image"):
        sam3(photo, parse_prompt("", [Exemplar((10, 500, 50, 600), "bolt")]), Options())
    text_only = sam3(photo, "red square", Options(0.0, 0.0, nms_threshold=1.0))
    mixed = sam3(photo, parse_prompt("red square", [Exemplar((100, 100, 300, 250), "thing")]), EVERY_BOX)
    square = [i for i, label in enumerate(mixed.labels) if label == "red square"]
    np.testing.assert_allclose(mixed.scores[square], text_only.scores, atol=1e-6)  # a phrase without boxes: as before
