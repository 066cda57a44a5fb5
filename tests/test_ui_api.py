"""The page's public API through gradio_client, as the README documents it: ``/detect`` and ``/refine`` answer
with the pipeline's own results, and no other endpoint is listed."""

from __future__ import annotations

import numpy as np
import supervision as sv
from gradio_client import Client, handle_file

from pipeline import MaskPrompt, Options, load_image
from tests.browser import smooth_png


def test_detect_and_refine_answer_through_gradio_client_and_nothing_else_is_listed(app_url, pipeline, tmp_path):
    path = tmp_path / "api.png"
    path.write_bytes(smooth_png(31))
    client = Client(app_url, verbose=False)

    api = client.view_api(return_format="dict", print_info=False)
    found = client.predict(handle_file(str(path)), "dog. fence", 0.35, 0.25, "sam_tiny_test", "", api_name="/detect")
    refined = client.predict(
        handle_file(str(path)), [20, 30, 200, 180], [[100, 100], [150, 60]], [1, 0], "sam_tiny_test", api_name="/refine"
    )

    assert sorted(api["named_endpoints"]) == ["/detect", "/refine"] and not api["unnamed_endpoints"]
    image = load_image(path)
    want = pipeline(image, "dog. fence", Options(0.35, 0.25, "sam_tiny_test"))
    assert len(want) > 0 and [d["label"] for d in found["detections"]] == want.labels
    np.testing.assert_allclose([d["box_xyxy"] for d in found["detections"]], want.xyxy, atol=0.01)
    for entry, mask in zip(found["detections"], want.masks):  # each mask as supervision's polygons of it
        assert entry["mask_polygons"] == [p.astype(int).tolist() for p in sv.mask_to_polygons(mask)]
    mask = pipeline.segmenters.get("sam_tiny_test").decode(
        image, [MaskPrompt(box=(20, 30, 200, 180), points=((100, 100), (150, 60)), positive=(True, False))]
    )[0]
    assert refined["area"] == int(mask.sum()) and (refined["width"], refined["height"]) == (image.width, image.height)


def test_detect_takes_another_detector_at_run_time_and_explains_one_it_cannot_load(app_url, pipeline, tmp_path):
    import pytest
    from gradio_client.exceptions import AppError

    from pipeline.testing.models import save_grounding_dino

    other = save_grounding_dino(tmp_path / "mm", family="mm-grounding-dino", seed=3)
    path = tmp_path / "api.png"
    path.write_bytes(smooth_png(32))
    client = Client(app_url, verbose=False)
    found = client.predict(handle_file(str(path)), "dog. fence", 0.0, 0.25, "", str(other), api_name="/detect")
    want = pipeline(load_image(path), "dog. fence", Options(0.0, 0.25, detector=str(other)))
    default = pipeline(load_image(path), "dog. fence", Options(0.0, 0.25))
    assert (
        type(pipeline.detector_for(Options(detector=str(other))).model).__name__ == "MMGroundingDinoForObjectDetection"
    )
    np.testing.assert_allclose([d["box_xyxy"] for d in found["detections"]], want.xyxy, atol=0.01)
    assert not np.allclose(want.xyxy, default.xyxy)  # another model's boxes, not the app's
    with pytest.raises(AppError, match="mm_grounding_dino_tiny_o365v1_goldg_v3det"):  # offline: says what is missing
        client.predict(handle_file(str(path)), "dog", 0.35, 0.25, "", "mm-grounding-dino-tiny", api_name="/detect")


def test_detect_with_sam3_returns_its_own_masks_without_loading_the_segmenter(app_url, pipeline, tmp_path):
    """SAM 3 as the page's detector with masks asked for (MobileSAM named, whose weights are not on this machine):
    the polygons are SAM 3's masks and no segmenter loads."""
    from pipeline.testing.detectors import save_sam3

    sam3 = save_sam3(tmp_path / "sam3")
    path = tmp_path / "api.png"
    path.write_bytes(smooth_png(33))
    client = Client(app_url, verbose=False)
    found = client.predict(handle_file(str(path)), "dog", 0.2, 0.25, "mobile_sam", str(sam3), api_name="/detect")
    want = pipeline(load_image(path), "dog", Options(0.2, 0.25, "mobile_sam", str(sam3)))
    assert len(want) == len(found["detections"]) > 0 and "mobile_sam" not in pipeline.segmenters.loaded
    for entry, mask in zip(found["detections"], want.masks):
        assert entry["mask_polygons"] == [p.astype(int).tolist() for p in sv.mask_to_polygons(mask)]


def test_a_failed_detect_is_one_line_in_the_server_console_and_no_traceback(app_url, tmp_path, capfd, caplog):
    """No weights for the asked detector (the tests run offline): an expected failure, whose sentence the client
    gets; the server's console (the app runs in this process) shows it as one log line."""
    import logging

    import pytest
    from gradio_client.exceptions import AppError

    path = tmp_path / "api.png"
    path.write_bytes(smooth_png(34))
    client = Client(app_url, verbose=False)
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="ui.api"), pytest.raises(AppError, match="downloads are off"):
        client.predict(handle_file(str(path)), "dog", 0.35, 0.25, "", "owlv2-base", api_name="/detect")

    console = capfd.readouterr().err
    lines = [record.getMessage() for record in caplog.records if record.name == "ui.api"]
    assert "Traceback" not in console and "gradio.exceptions.Error" not in console
    assert len(lines) == 1 and lines[0].startswith("/detect failed: ") and "owlv2" in lines[0]
    assert "\n" not in lines[0]
