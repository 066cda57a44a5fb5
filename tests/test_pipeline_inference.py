"""Inference on tiny random models of the real architectures, loaded from disk through the product's loaders."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything import SamPredictor

from pipeline import (
    GroundingPipeline,
    LabelMap,
    MaskPrompt,
    Options,
    PromptError,
    WeightsError,
    load_image,
    parse_prompt,
    render,
    segmenter_spec,
)
from pipeline.detector import GroundingDinoDetector
from pipeline.segmenter import Segmenter
from pipeline.testing.models import TEST_INPUT_SIZE, load_tiny_pipeline
from tests.counting import count_calls

PROMPT = "brown dog. possum on a fence"


@pytest.fixture
def fresh(model_paths) -> GroundingPipeline:
    """A pipeline with empty caches (the session one is shared across tests)."""
    detector_dir, sam_checkpoint = model_paths
    return load_tiny_pipeline(detector_dir, sam_checkpoint)


def same_detections(a, b) -> bool:
    return (
        np.allclose(a.xyxy, b.xyxy, atol=1e-4)
        and np.allclose(a.scores, b.scores, atol=1e-6)
        and a.phrases == b.phrases
        and a.labels == b.labels
    )


def test_loader_reads_a_saved_model_directory(pipeline, model_paths):
    assert pipeline.detector.model_id == str(model_paths[0])
    assert pipeline.detector.model.config.d_model == 32


def test_missing_detector_gives_a_weights_error_with_the_fix(tmp_path):
    with pytest.raises(WeightsError, match="local directory made with save_pretrained"):
        GroundingDinoDetector(str(tmp_path / "nowhere"), device="cpu")


def test_missing_segmenter_weights_name_the_file_and_the_variable(fresh, photo):
    with pytest.raises(WeightsError, match=r"mobile_sam\.pt.*GROUNDLABEL_MOBILE_SAM_CHECKPOINT"):
        fresh(photo, PROMPT, Options(segmenter="mobile_sam"))


def test_detections_are_boxes_inside_the_image_with_prompt_labels(pipeline, photo):
    result = pipeline(photo, PROMPT, Options(0.0, 0.0))
    assert len(result) == pipeline.detector.model.config.num_queries
    assert (result.xyxy[:, [0, 2]] >= 0).all() and (result.xyxy[:, [0, 2]] <= 640).all()
    assert (result.xyxy[:, [1, 3]] >= 0).all() and (result.xyxy[:, [1, 3]] <= 480).all()
    assert set(result.prompt_phrases) <= {"brown dog", "possum on a fence"}
    assert result.labels == result.prompt_phrases


def test_threshold_change_refilters_cached_output_like_a_fresh_run(fresh, model_paths, photo):
    fresh(photo, PROMPT, Options(0.0, 0.0))
    with count_calls(fresh.detector.model) as counter:
        refiltered = fresh(photo, PROMPT, Options(0.5, 0.4))
    assert counter.count == 0
    other = load_tiny_pipeline(model_paths[0])
    assert same_detections(refiltered, other(photo, PROMPT, Options(0.5, 0.4)))
    assert 0 < len(refiltered) < len(fresh(photo, PROMPT, Options(0.0)))


def test_new_prompt_runs_the_detector_again(fresh, photo):
    fresh(photo, PROMPT)
    with count_calls(fresh.detector.model) as counter:
        fresh(photo, "cat")
        fresh(photo, "cat", Options(0.9))
    assert counter.count == 1


def test_filtering_matches_transformers_post_processing(pipeline, photo):
    detector = pipeline.detector
    image = load_image(photo)
    size = {"shortest_edge": TEST_INPUT_SIZE, "longest_edge": TEST_INPUT_SIZE * 1333 // 800}
    inputs = detector.processor(images=image.pil, text=parse_prompt(PROMPT).text, return_tensors="pt", size=size)
    with torch.inference_mode():
        outputs = detector.model(**inputs)
    expected = detector.processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=0.3, text_threshold=0.2, target_sizes=[(480, 640)]
    )[0]
    result = pipeline(photo, PROMPT, Options(0.3, 0.2))
    assert np.allclose(result.xyxy, expected["boxes"].clamp(min=0).numpy().clip(max=[640, 480, 640, 480]), atol=1e-3)
    assert np.allclose(result.scores, expected["scores"].numpy(), atol=1e-5)
    # Phrases are whole words of the box's own prompt phrase: never separators, special tokens or '##' pieces
    # (transformers' text labels decode every token above the text threshold, those included).
    assert any(label.strip() != label.strip(" .") or "[" in label for label in expected["text_labels"])
    for phrase, prompt_phrase in zip(result.phrases, result.prompt_phrases):
        assert phrase.split() == [word for word in prompt_phrase.split() if word in phrase.split()]
        assert "[" not in phrase and "##" not in phrase and "." not in phrase


def test_each_box_gets_the_prompt_phrase_its_tokens_score_highest(pipeline, photo):
    raw = pipeline.detector.raw([load_image(photo)], parse_prompt(PROMPT))[0]
    probs = raw.logits.sigmoid()
    ids = raw.tokens.input_ids.tolist()
    first = [i for i, token in enumerate(ids) if token not in (101, 102, 1012)][:2]  # "brown dog"
    second = [i for i, token in enumerate(ids) if token not in (101, 102, 1012)][2:]  # "possum on a fence"
    expected = [
        "brown dog" if probs[q, first].max() > probs[q, second].max() else "possum on a fence"
        for q in range(len(probs))
    ]
    order = probs.max(dim=-1).values > 0.0
    result = pipeline(photo, PROMPT, Options(0.0, 0.0))
    assert result.prompt_phrases == [phrase for phrase, keep in zip(expected, order) if keep]


@pytest.mark.parametrize("text_threshold", [0.0, 0.45, 0.5, 0.55, 1.0])
def test_a_phrase_holds_the_words_of_its_prompt_phrase_that_the_box_scores_above_the_text_threshold(
    pipeline, photo, text_threshold
):
    raw = pipeline.detector.raw([load_image(photo)], parse_prompt(PROMPT))[0]
    probs = raw.logits.sigmoid()
    tokenizer = pipeline.detector.processor.tokenizer
    pieces = tokenizer.convert_ids_to_tokens(raw.tokens.input_ids.tolist())
    result = pipeline(photo, PROMPT, Options(0.0, text_threshold))
    kept = [q for q in range(len(probs)) if probs[q].max() > 0.0]
    assert len(result) == len(kept) > 0
    for q, phrase, prompt_phrase in zip(kept, result.phrases, result.prompt_phrases):
        number = PROMPT.split(". ").index(prompt_phrase)
        words, positions = [], [p for p, n in enumerate(raw.tokens.phrase_of_token.tolist()) if n == number]
        for p in positions:  # whole words: a '##' piece belongs to the word before it
            if pieces[p].startswith("##"):
                words[-1].append(p)
            else:
                words.append([p])
        expected = [word for word, span in zip(prompt_phrase.split(), words) if probs[q, span].max() > text_threshold]
        assert phrase.split() == expected
    if text_threshold == 1.0:
        assert set(result.phrases) == {""}


def test_labels_map_to_targets_and_unmapped_phrases_are_reported(pipeline, photo):
    result = pipeline(photo, "brown dog:Dog. possum on a fence", Options(0.0), LabelMap(["Dog", "Cat"]))
    assert set(result.labels) <= {"Dog", None}
    assert result.unmapped == ["possum on a fence"]
    assert all(
        (label is None) == (phrase == "possum on a fence")
        for label, phrase in zip(result.labels, result.prompt_phrases)
    )
    assert "possum on a fence?" in result.display_labels()


def test_exif_rotated_photo_gives_boxes_and_masks_in_the_upright_frame(pipeline, photo):
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo).save(buffer, format="PNG", exif=exif.tobytes())
    upright = np.rot90(photo, k=-1).copy()
    rotated_result = pipeline(buffer.getvalue(), PROMPT, Options(0.2, segmenter="sam_tiny_test"))
    upright_result = pipeline(upright, PROMPT, Options(0.2, segmenter="sam_tiny_test"))
    assert (rotated_result.width, rotated_result.height) == (480, 640)
    assert rotated_result.masks.shape[1:] == (640, 480)
    assert same_detections(rotated_result, upright_result)
    assert np.array_equal(rotated_result.masks, upright_result.masks)


def test_masks_equal_sam_predictor_on_the_same_boxes(pipeline, photo):
    result = pipeline(photo, PROMPT, Options(0.5, segmenter="sam_tiny_test"))
    predictor = SamPredictor(pipeline.segmenters.get("sam_tiny_test").predictor.model)
    predictor.set_image(photo)
    assert len(result) > 0 and result.masks.shape == (len(result), 480, 640)
    boxes = predictor.transform.apply_boxes_torch(torch.as_tensor(result.xyxy), (480, 640))
    expected, _, _ = predictor.predict_torch(None, None, boxes, multimask_output=False)  # SAM's batched API
    assert np.array_equal(result.masks, expected[:, 0].numpy())
    for box, mask in zip(result.xyxy, result.masks):  # and one box at a time: the same masks up to edge pixels
        alone, _, _ = predictor.predict(box=box, multimask_output=False)
        assert (mask == alone[0]).mean() > 0.999


def test_new_prompt_on_same_image_reuses_the_sam_embedding(fresh, photo):
    first = fresh(photo, PROMPT, Options(0.5, segmenter="sam_tiny_test"))
    model = fresh.segmenters.get("sam_tiny_test").predictor.model
    with (
        count_calls(model.image_encoder) as encoder,
        count_calls(model.mask_decoder, rows="sparse_prompt_embeddings") as decoder,
    ):
        result = fresh(photo, "cat. dog", Options(0.5, segmenter="sam_tiny_test"))
    seen = {tuple(np.round(box, 2)) for box in first.xyxy}
    new_boxes = [box for box in result.xyxy if tuple(np.round(box, 2)) not in seen]
    assert encoder.count == 0
    assert decoder.rows == len(new_boxes) > 0 and decoder.count == 1  # the new boxes only, in one decoder call


def test_threshold_change_with_masks_runs_no_model(fresh, photo):
    fresh(photo, PROMPT, Options(0.1, segmenter="sam_tiny_test"))
    model = fresh.segmenters.get("sam_tiny_test").predictor.model
    with (
        count_calls(fresh.detector.model) as detector,
        count_calls(model.image_encoder) as encoder,
        count_calls(model.mask_decoder) as decoder,
    ):
        result = fresh(photo, PROMPT, Options(0.3, segmenter="sam_tiny_test"))
    assert (detector.count, encoder.count, decoder.count) == (0, 0, 0)
    assert result.masks.shape[0] == len(result)


def test_caches_are_bounded(model_paths):
    detector_dir, sam_checkpoint = model_paths
    segmenter = Segmenter(
        segmenter_spec("sam_tiny_test"), sam_checkpoint, device="cpu", embedding_cache_bytes=3 * (1 << 20)
    )
    rng = np.random.default_rng(1)
    for _ in range(4):
        segmenter.decode(load_image(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)), [MaskPrompt((1, 1, 30, 30))])
    features = segmenter.predictor.features
    per_image = features.element_size() * features.nelement()
    assert len(segmenter._embeddings) == (3 << 20) // per_image < 4
    assert segmenter._embeddings.nbytes <= 3 << 20


def test_over_long_prompt_is_refused_with_the_token_count(pipeline, photo):
    with pytest.raises(PromptError, match=r"tokens long; the detector reads at most 256"):
        pipeline(photo, ". ".join(f"dog {i}" for i in range(120)))


def test_render_draws_on_a_copy(pipeline, photo):
    result = pipeline(photo, PROMPT, Options(0.3, segmenter="sam_tiny_test"))
    image = load_image(photo)
    drawn = np.asarray(render(image, result))
    assert drawn.shape == photo.shape and not np.array_equal(drawn, photo)
    assert np.array_equal(np.asarray(image.pil), photo)  # the input is untouched
    assert result.to_supervision().class_id.shape == (len(result),)


@pytest.mark.parametrize("width,height", [(640, 480), (6000, 4000)])
def test_overlays_read_the_same_at_display_size_and_a_tag_at_the_top_edge_stays_in_the_image(width, height):
    from tests.labelstudio import detections

    grey = Image.fromarray(np.full((height, width, 3), 128, np.uint8))
    box = [0.1 * width, 0, 0.5 * width, 0.3 * height]  # touching the top edge, where the tag used to be cut off
    changed = (np.asarray(render(grey, detections(width, height, [box], ["dog"]))) != 128).any(-1)

    shrink = width / 640  # the UI shows results about 640 px wide
    line = changed[int(0.2 * height) :, int(0.3 * width)]  # the box's bottom edge, crossed downwards
    assert 2 <= line.sum() / shrink <= 4  # 2-4 px on screen, for the 640 px image and the 6000 px photo alike
    tag = changed[:, int(0.12 * width)]  # the tag's column, from the top of the image
    assert tag[: int(12 * shrink)].all() and 14 <= tag[: int(0.2 * height)].sum() / shrink <= 40  # inside, readable


def test_selecting_kept_detections_keeps_rows_aligned(pipeline, photo):
    result = pipeline(photo, PROMPT, Options(0.2, segmenter="sam_tiny_test"))
    kept = result[[2, 0]].with_labels(["wolf", result.labels[0]])
    assert np.array_equal(kept.xyxy, result.xyxy[[2, 0]])
    assert np.array_equal(kept.masks, result.masks[[2, 0]])
    assert kept.labels == ["wolf", result.labels[0]]


def test_a_batch_gives_the_same_results_as_one_image_at_a_time(fresh, model_paths, photo):
    other = np.ascontiguousarray(photo[::-1])
    with count_calls(fresh.detector.model) as counter:
        batched = fresh.batch([photo, other], PROMPT, Options(0.3))
    assert counter.count == 1
    single = load_tiny_pipeline(model_paths[0])
    for result, image in zip(batched, [photo, other]):
        assert same_detections(result, single(image, PROMPT, Options(0.3)))
