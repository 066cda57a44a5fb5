"""DetectionResult -> Label Studio regions: percent boxes in the upright frame, brush RLE that label-studio-sdk
decodes back to the same mask, polygons, stable ids, scores, and nothing unlabeled."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from label_studio_sdk.converter.brush import decode_rle

from pipeline import load_image
from sync import REGIONS, ProjectConfig, box_to_pixels, rle_to_mask, to_label_studio
from sync.convert import from_label_studio
from tests.labelstudio import GROUNDING_DINO_CONFIG, blob_masks, detections, exif_rotated_jpeg

CONFIG = ProjectConfig.parse(GROUNDING_DINO_CONFIG)
POLYGON_CONFIG = ProjectConfig.parse("""<View><Image name="image" value="$image"/>
  <PolygonLabels name="outline" toName="image"><Label value="cats"/></PolygonLabels></View>""")


def test_rectangles_are_percent_of_the_image_with_its_size_and_scores():
    result = detections(200, 100, [[20, 10, 120, 60]], ["cats"])

    converted = to_label_studio(result, CONFIG, masks=False)

    (region,) = converted.result
    assert region["type"] == "rectanglelabels" and region["from_name"] == "label" and region["to_name"] == "image"
    assert region["value"] == {
        "x": 10.0,
        "y": 10.0,
        "width": 50.0,
        "height": 50.0,
        "rotation": 0,
        "rectanglelabels": ["cats"],
    }
    assert (region["original_width"], region["original_height"]) == (200, 100)
    assert region["score"] == converted.score == 0.5
    assert converted.model_version == CONFIG.version(result.model_version)


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 4000),
    height=st.integers(1, 4000),
    box=st.lists(st.floats(-5000, 9000, allow_nan=False, width=32), min_size=4, max_size=4),
)
def test_boxes_are_clipped_to_the_image_and_map_back_to_the_same_pixels(width, height, box):
    x0, x1 = sorted(box[::2])
    y0, y1 = sorted(box[1::2])
    result = detections(width, height, [[x0, y0, x1, y1]], ["cats"])

    (region,) = to_label_studio(result, CONFIG).result
    value = region["value"]

    for start, size in ((value["x"], value["width"]), (value["y"], value["height"])):
        assert 0 <= start <= 100 and 0 <= size and start + size <= 100 + 1e-9
    clipped = np.clip(result.xyxy[0], 0, [width, height, width, height])
    np.testing.assert_allclose(box_to_pixels(region), clipped, atol=1e-4 * max(width, height))


def test_brush_rle_decodes_with_label_studio_sdk_to_the_same_mask():
    boxes = [[3, 4, 40, 30], [50, 1, 77, 59]]
    masks = blob_masks(77, 59, boxes)  # odd sizes: RLE rows must not be padded
    result = detections(77, 59, boxes, ["cats", "house"], masks=masks)

    brushes = [r for r in to_label_studio(result, CONFIG).result if r["type"] == "brushlabels"]

    assert [b["value"]["brushlabels"] for b in brushes] == [["cats"], ["house"]]
    for brush, mask in zip(brushes, masks):
        assert brush["from_name"] == "label2" and brush["value"]["format"] == "rle"
        assert decode_rle(brush["value"]["rle"]).size == 77 * 59 * 4
        np.testing.assert_array_equal(rle_to_mask(brush), mask)


def test_polygons_come_from_masks_when_the_config_has_polygon_labels():
    masks = blob_masks(120, 90, [[20, 20, 100, 70]])
    result = detections(120, 90, [[20, 20, 100, 70]], ["cats"], masks=masks)

    (polygon,) = to_label_studio(result, POLYGON_CONFIG).result

    assert polygon["type"] == "polygonlabels" and polygon["value"]["polygonlabels"] == ["cats"]
    points = np.array(polygon["value"]["points"]) / 100 * [120, 90]
    assert len(points) >= 8 and polygon["value"]["closed"] is True
    inside = masks[0][np.round(points[:, 1]).astype(int).clip(0, 89), np.round(points[:, 0]).astype(int).clip(0, 119)]
    assert inside.all()  # every vertex lies on the mask's outline
    np.testing.assert_allclose([points[:, 0].min(), points[:, 0].max()], [20, 100], atol=1.5)


def test_region_ids_are_stable_and_unique_and_change_with_the_geometry():
    boxes = [[1, 1, 10, 10], [1, 1, 10, 10], [5, 5, 20, 20]]
    result = detections(50, 50, boxes, ["cats", "cats", "cats"], masks=blob_masks(50, 50, boxes))

    first, second = to_label_studio(result, CONFIG), to_label_studio(result, CONFIG)
    moved = to_label_studio(result[[2]], CONFIG)

    assert first.region_ids == second.region_ids
    assert len(set(first.region_ids)) == len(first.result) == 6
    assert moved.region_ids == first.region_ids[4:]  # rectangle, brush per detection


def test_unlabeled_detections_are_left_out_with_a_reason():
    config = ProjectConfig.parse("""<View><Image name="image" value="$image"/>
      <RectangleLabels name="label" toName="image"><Label value="cats"/><Label value="house"/></RectangleLabels>
      <BrushLabels name="label2" toName="image"><Label value="cats"/></BrushLabels></View>""")
    boxes = [[1, 1, 10, 10], [5, 5, 20, 20], [2, 2, 30, 30]]
    result = detections(40, 40, boxes, ["cats", None, "house"], masks=blob_masks(40, 40, boxes))

    converted = to_label_studio(result, config)

    assert [(r["type"], r["value"][r["type"]]) for r in converted.result] == [
        ("rectanglelabels", ["cats"]),
        ("brushlabels", ["cats"]),
        ("rectanglelabels", ["house"]),
    ]
    assert len(converted.skipped) == 1 and "matches none of the project's labels" in converted.skipped[0]
    assert converted.score == 0.5  # the weakest detection shown (the unlabeled one, 0.6, is not)


def test_the_prediction_score_is_the_weakest_detection_lowered_where_boxes_overlap():
    apart = detections(100, 100, [[0, 0, 20, 20], [50, 50, 80, 80]], ["cats", "house"], scores=[0.9, 0.6])
    on_one_object = detections(100, 100, [[0, 0, 20, 20], [1, 0, 20, 20]], ["cats", "house"], scores=[0.9, 0.8])

    assert to_label_studio(apart, CONFIG).score == 0.6
    assert to_label_studio(on_one_object, CONFIG).score == round(0.8 * (1 - 0.95 / 2), 4)  # IoU 19/20


def test_relabel_and_select_reach_label_studio_and_empty_results_score_zero():
    result = detections(40, 40, [[1, 1, 10, 10], [5, 5, 20, 20]], [None, "cats"])

    kept = to_label_studio(result.with_labels(["house", "cats"])[[0]], CONFIG)
    nothing = to_label_studio(result[[]], CONFIG)

    assert [r["value"]["rectanglelabels"] for r in kept.result] == [["house"]] and kept.skipped == []
    assert (nothing.result, nothing.score) == ([], 0.0)


def test_exif_rotated_image_regions_use_the_upright_size_and_land_on_the_object():
    jpeg, red_box = exif_rotated_jpeg()
    image = load_image(jpeg)
    result = detections(image.width, image.height, [red_box], ["cats"])

    (region,) = to_label_studio(result, CONFIG, masks=False).result

    assert (region["original_width"], region["original_height"]) == (60, 80)  # stored 80x60, shown turned
    x0, y0, x1, y1 = np.round(box_to_pixels(region)).astype(int)
    inside = image.array[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].astype(int)
    assert (inside[..., 0] > 200).all() and (inside[..., 1] < 80).all()


@pytest.mark.parametrize("kind", [region for region in REGIONS if region.write], ids=lambda region: region.type)
def test_every_filled_region_type_writes_what_from_label_studio_reads_back(kind):
    """A new entry of the region table is converted both ways without further code: its control tag parses, a
    detection becomes one region of its type, and that region reads back to the same box or mask."""
    config = ProjectConfig.parse(f"""<View><Image name="image" value="$image"/>
      <{kind.tag} name="out" toName="image"><Label value="cats"/></{kind.tag}></View>""")
    box = [20, 10, 120, 60]
    result = detections(200, 100, [box], ["cats"], masks=blob_masks(200, 100, [box]))

    (region,) = to_label_studio(result, config).result

    assert (region["type"], region["value"][kind.type], config.wants_masks) == (kind.type, ["cats"], kind.masks)
    back = from_label_studio([region], 200, 100)
    assert back.labels == ["cats"]
    if kind.masks:
        overlap = (back.masks[0] & result.masks[0]).sum() / (back.masks[0] | result.masks[0]).sum()
        assert overlap > 0.9
    else:
        np.testing.assert_allclose(back.xyxy[0], box, atol=1e-3)
