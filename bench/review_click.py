"""What a click on the Label Studio tab's preview costs on the server (ui.review.Review.click and what the answer
carries), by image size, with MobileSAM of its real shape (random weights: the compute is real).

For each size: the first click (image encoder + decoder, once per image) and a later click (decoder only, the
embedding cached), then the rest of the answer: the preview redrawn with every mask, its JPEG as Gradio sends it,
and the box editor's image when it is sent again (only while the editor's tab is shown, when boxes change).
Random weights make speckled masks, so the drawing rows are an upper bound. Goal (issue 12: a later click's
mask in < 100 ms for images up to 2 MP, where a full segmenter run takes ~1.4 s): up to 2 MP a later click costs at
most 10 % of the first, taken in the same run. Run:
``python -m bench.review_click [--threads 2] [--clicks 5] [--check] [--update-docs]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bench.common import Goal, Table, add_check_arguments, finish, real_models
from pipeline import DetectionResult, MaskPrompt, SegmenterPool, load_image
from ui.review import Review

SIZES = [(1280, 800), (1600, 1200), (4000, 3000), (6000, 4000)]
DETECTIONS = 5
LATER_CLICK = Goal("later / first", "<=", 0.10)
GOAL_PIXELS = 2_000_000  # the goal holds for images up to 2 MP


def _median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(size: tuple[int, int], segmenter, clicks: int) -> tuple[tuple, float]:
    """The row's cells, and the later click's time over the first's."""
    import gradio as gr
    from gradio_image_annotation import image_annotator
    from PIL import Image

    width, height = size
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    image = load_image(np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR)))
    boxes = np.array(
        [[width * (0.1 + 0.15 * i), height * 0.2, width * (0.2 + 0.15 * i), height * 0.6] for i in range(DETECTIONS)],
        np.float32,
    )
    started = time.perf_counter()
    masks = segmenter.decode(image, [MaskPrompt.from_box(box) for box in boxes])
    first = (time.perf_counter() - started) * 1000
    result = DetectionResult(
        width,
        height,
        boxes,
        np.full(DETECTIONS, 0.9),
        ["dog"] * DETECTIONS,
        ["dog"] * DETECTIONS,
        ["dog"] * DETECTIONS,
        masks=masks,
    )
    review = Review.of(image, result)
    decode = lambda prompt: segmenter.decode(image, [prompt])[0]  # noqa: E731
    points = iter(rng.uniform(0.2, 0.8, (clicks, 2)) * [width, height])
    click = _median_ms(lambda: review.click(0, *next(points), True, None, decode), clicks)
    preview = review.preview()
    draw = _median_ms(review.preview, 3)
    jpeg = _median_ms(lambda: gr.Image(type="pil", format="jpeg").postprocess(preview), 3)
    editor = _median_ms(lambda: image_annotator().postprocess(review.editor_value({})), 3)
    cells = (
        f"{width}x{height} ({width * height / 1e6:.1f} MP)",
        f"{first:.0f} ms",
        f"{click:.0f} ms",
        f"{click / first:.3f}",
        f"{draw:.0f} ms",
        f"{jpeg:.0f} ms",
        f"{editor:.0f} ms",
    )
    return cells, click / first


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_check_arguments(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clicks", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, checkpoints = real_models(["mobile_sam"])
    segmenter = SegmenterPool(device="cpu", checkpoints=checkpoints, offline=True).get("mobile_sam")
    table = Table(
        "review_click",
        f"A click on the review's preview, server side, MobileSAM (real shape, random weights), {args.threads} threads",
        (
            "image",
            "first click (encoder + decoder: a full segmenter run)",
            "later click (decoder only)",
            "later / first",
            "preview redrawn",
            "preview JPEG",
            "editor image (sent only while its tab is shown)",
        ),
    )
    for width, height in SIZES:
        cells, ratio = measure((width, height), segmenter, args.clicks)
        table.add(*cells, checks=[(LATER_CLICK, ratio)] if width * height <= GOAL_PIXELS else [])
    finish(args, table)


if __name__ == "__main__":
    main()
