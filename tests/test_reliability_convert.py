"""Properties of the conversion layer, checked with hypothesis against label-studio-sdk's own decoder: any box
inside the image lands at percent values in [0, 100] that map back to its pixels, on images up to 20,000 px
wide; any mask comes back bit for bit from Label Studio's brush RLE. 300 boxes and 300 masks per run."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from label_studio_sdk.converter.brush import decode_from_annotation

from sync import ProjectConfig, box_to_pixels, to_label_studio
from tests.labelstudio import GROUNDING_DINO_CONFIG, detections

CONFIG = ProjectConfig.parse(GROUNDING_DINO_CONFIG)


@st.composite
def image_and_box(draw) -> tuple[int, int, list[float]]:
    """An image size up to 20,000 px a side and a box inside it, in whole or fractional pixels."""
    width, height = draw(st.integers(1, 20_000)), draw(st.integers(1, 20_000))
    coordinate = st.integers if draw(st.booleans()) else (lambda lo, hi: st.floats(lo, hi, allow_nan=False))
    x0, y0 = draw(coordinate(0, width)), draw(coordinate(0, height))
    return width, height, [x0, y0, draw(coordinate(x0, width)), draw(coordinate(y0, height))]


@settings(max_examples=300, deadline=None)
@given(image_and_box())
def test_box_inside_the_image_is_in_percent_0_to_100_and_maps_back_to_its_pixels(case):
    width, height, box = case
    result = detections(width, height, [box], ["cats"])

    (region,) = to_label_studio(result, CONFIG, masks=False).result

    value = region["value"]
    for start, size in ((value["x"], value["width"]), (value["y"], value["height"])):
        assert 0 <= start <= 100 and 0 <= size <= 100 and start + size <= 100
    # float32 pixels are what the detector hands over; the percent values lose less than a thousandth of a pixel
    np.testing.assert_allclose(box_to_pixels(region), result.xyxy[0].astype(np.float64), rtol=0, atol=1e-3)


@settings(max_examples=300, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 48), st.integers(1, 48))))
def test_any_mask_survives_the_brush_rle_round_trip_through_label_studio_sdk(mask):
    height, width = mask.shape
    result = detections(width, height, [[0, 0, width, height]], ["cats"], masks=mask[None])

    converted = to_label_studio(result, CONFIG, boxes=False)

    if not mask.any():  # nothing to draw: left out, and said so
        assert converted.result == [] and len(converted.skipped) == 1
        return
    (brush,) = converted.result
    # Label Studio's export flattens "value" into the result; its converter then decodes the RLE.
    (layer,) = decode_from_annotation(brush["from_name"], [{**brush, **brush["value"]}]).values()
    np.testing.assert_array_equal(layer > 127, mask)
