"""Where the pipeline's time goes, and what the caches save: prints a markdown table.

Models have the real architectures (grounding-dino-tiny shape, MobileSAM vit_t, SAM vit_b) with random weights,
so timings reflect real compute. Run: ``python -m bench.pipeline_speed [--segmenters mobile_sam sam_vit_b]``.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.common import load_pipeline, print_table, real_models, timed
from pipeline import MaskPrompt, Options, load_image

PROMPT_A = "brown dog. possum on a fence"
PROMPT_B = "cat. red car"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--segmenters", nargs="*", default=["mobile_sam", "sam_vit_b"])
    parser.add_argument("--size", default="640x480", help="image WxH")
    parser.add_argument("--boxes", type=int, default=5, help="boxes per prompt sent to the segmenter")
    parser.add_argument("--repeats", type=int, default=20, help="repeats of the cached (fast) measurements")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    detector_dir, checkpoints = real_models(args.segmenters)
    pipeline = load_pipeline(detector_dir, checkpoints)
    image = load_image(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))
    rows = []

    full = timed(lambda: pipeline(image, PROMPT_A, Options(box_threshold=0.3)))
    thresholds = iter(np.linspace(0.05, 0.9, args.repeats))
    refilter = timed(lambda: pipeline(image, PROMPT_A, Options(box_threshold=float(next(thresholds)))), args.repeats)
    rows.append(("threshold change on a cached result (boxes)", refilter, full))

    for name in args.segmenters:
        segmenter = pipeline.segmenters.get(name)
        boxes_a = [MaskPrompt.from_box(box) for box in pipeline(image, PROMPT_A, Options(0.0)).xyxy[: args.boxes]]
        boxes_b = [
            MaskPrompt.from_box(box + 0.5)  # never the same boxes
            for box in pipeline(image, PROMPT_B, Options(0.0)).xyxy[: args.boxes]
        ]
        first = timed(lambda: segmenter.decode(image, boxes_a))
        second = timed(lambda: segmenter.decode(image, boxes_b))
        rows.append((f"second prompt's mask stage vs first ({name}, {args.boxes} boxes)", second, first))
        masks_thresholds = iter(np.linspace(0.05, 0.9, args.repeats))
        pipeline(image, PROMPT_A, Options(0.0, segmenter=name))
        cached = timed(
            lambda: pipeline(image, PROMPT_A, Options(float(next(masks_thresholds)), segmenter=name)), args.repeats
        )
        rows.append((f"threshold change on a cached result (boxes + {name} masks)", cached, full + first))

    print_table(
        f"Caches: cached vs uncached work ({width}x{height} image, device {pipeline.detector.device})",
        ("measurement", "cached / second", "full / first", "speed-up", "cached as % of full"),
        [
            (
                name,
                f"{fast * 1000:.1f} ms",
                f"{slow * 1000:.0f} ms",
                f"{slow / fast:.0f}x",
                f"{100 * fast / slow:.1f} %",
            )
            for name, fast, slow in rows
        ],
    )


if __name__ == "__main__":
    main()
