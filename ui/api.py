"""The page's public API, named and few: ``/detect`` (image + prompt -> labeled boxes, and masks as polygons) and
``/refine`` (image + box and/or points -> one mask). Every other event of the page is UI plumbing and hidden
from "Use via API" (``hide_the_rest``). With basic auth set, the API needs it too (it is the same app).

    from gradio_client import Client, handle_file
    client = Client("http://localhost:7860/")
    found = client.predict(handle_file("dog.jpg"), "dog. possum", 0.35, 0.25, "mobile_sam", "", api_name="/detect")
    mask = client.predict(handle_file("dog.jpg"), [10, 20, 200, 180], [[120, 90]], [1], "mobile_sam",
                          api_name="/refine")
"""

from __future__ import annotations

import logging

import gradio as gr
from gradio.data_classes import FileData

from pipeline import DEFAULT_BOX_THRESHOLD, DEFAULT_TEXT_THRESHOLD, MaskPrompt, Options, load_image
from pipeline.errors import GroundlabelError

from .detections import detections_json, mask_polygons
from .models import ModelHub

PUBLIC = ("detect", "refine")
log = logging.getLogger(__name__)


def public_api(hub: ModelHub) -> None:
    """Register ``/detect`` and ``/refine`` on the Blocks being built, before the UI's events, so these names are
    theirs (Gradio renames a later event that asks for a taken name)."""

    def detect(
        image: FileData,
        prompt: str,
        box_threshold: float = DEFAULT_BOX_THRESHOLD,
        text_threshold: float = DEFAULT_TEXT_THRESHOLD,
        segmenter: str = "",
        detector: str = "",
    ) -> dict:
        """Labeled boxes for the phrases of ``prompt`` ("dog. possum on a fence"; "phrase:label" names the label);
        with ``segmenter`` (e.g. mobile_sam), a mask per box as polygons. ``detector``: "" for the app's
        detector, or a registered name (``python -m pipeline --models``), Hub id or local directory, loaded on first
        use beside the app's."""
        try:
            pipeline = hub.load(segmenter or None, lambda *args, **kwargs: None, detector=detector or None)
            picture = load_image(_path(image), pipeline.settings.max_pixels)
            result = pipeline(
                picture, prompt, Options(box_threshold, text_threshold, segmenter or None, detector or None)
            )
        except GroundlabelError as error:
            raise _expected("/detect", error) from None
        return detections_json(result)

    def refine(
        image: FileData,
        box: list | None = None,
        points: list | None = None,
        labels: list | None = None,
        segmenter: str = "",
    ) -> dict:
        """One object's mask from a box [x0, y0, x1, y1] and/or points [[x, y], ...] in pixels of the upright
        image, ``labels`` 1 (on the object) or 0 (not on it) per point, as SAM takes them. Runs only the mask
        decoder when the image's embedding is cached."""
        try:
            name = segmenter or hub.default_segmenter
            pipeline = hub.load(name, lambda *args, **kwargs: None)
            picture = load_image(_path(image), pipeline.settings.max_pixels)
            points = [tuple(point) for point in points or []]
            prompt = MaskPrompt(
                box=tuple(box) if box else None,
                points=points,
                positive=tuple(bool(flag) for flag in (labels or [1] * len(points))),
            )
            masks, scores = pipeline.segmenters.get(name).decode_with_scores(picture, [prompt])
        except (GroundlabelError, ValueError, TypeError) as error:
            raise _expected("/refine", error) from None
        return {
            "width": picture.width,
            "height": picture.height,
            "segmenter": name,
            "score": round(float(scores[0]), 4),
            "area": int(masks[0].sum()),
            "polygons": mask_polygons(masks[0]),
        }

    gr.api(detect, api_name="detect", concurrency_id="model")
    gr.api(refine, api_name="refine", concurrency_id="model")


def hide_the_rest(blocks: gr.Blocks) -> None:
    """Every event but the ``PUBLIC`` endpoints out of the API listing ("undocumented": the page still calls them,
    and so can a client that knows their names, behind the same basic auth as the page)."""
    for function in blocks.fns.values():
        if function.api_name not in PUBLIC or function.name not in PUBLIC:
            function.api_visibility = "undocumented"


def _expected(endpoint: str, error: Exception) -> gr.Error:
    """An expected failure (no weights, a bad image or prompt) for the client: its sentence, and one log line in the
    server's console instead of Gradio's traceback (which says nothing the sentence does not)."""
    log.warning("%s failed: %s", endpoint, error)
    return gr.Error(str(error), print_exception=False)


def _path(image: FileData | dict | str) -> str:
    return image if isinstance(image, str) else (image["path"] if isinstance(image, dict) else image.path)
