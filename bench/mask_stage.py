"""The mask stage for N boxes on one image whose embedding is cached: a loop over ``SamPredictor.predict`` (how
groundlabel decoded before ``Segmenter.decode``, and its CPU default now) against one batched ``predict_torch`` call
(its default). The ratio is taken in one run, on the same warm embedding. Goal (issue 9): the batched call is
at least as fast as the loop on every device, since ``decode`` batches everywhere.

Run: ``python -m bench.mask_stage [--segmenters mobile_sam sam_vit_b] [--boxes 10] [--device cpu|cuda] [--check]``.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.common import Goal, Table, add_check_arguments, finish, load_pipeline, real_models, timed
from pipeline import MaskPrompt, load_image

BATCHED_WINS = Goal("loop / batched", ">=", 1.0, "x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_check_arguments(parser)
    parser.add_argument("--segmenters", nargs="*", default=["mobile_sam", "sam_vit_b"])
    parser.add_argument("--boxes", type=int, default=10)
    parser.add_argument("--size", default="640x480", help="image WxH")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    width, height = map(int, args.size.split("x"))
    detector, checkpoints = real_models(args.segmenters, shape="tiny")  # the detector plays no part here
    pipeline = load_pipeline(detector, checkpoints, device=args.device)
    rng = np.random.default_rng(0)
    image = load_image(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    corners = rng.uniform(0, [width, height], size=(args.boxes, 2, 2))
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1) + 8], axis=1)
    table = Table(
        "mask_stage",
        f"Mask stage for {args.boxes} boxes, {width}x{height}, embedding cached (median of {args.repeats})",
        ("segmenter", "device", "loop of predict (before)", "one predict_torch (decode's default)", "loop / batched"),
    )
    for name in args.segmenters:
        segmenter = pipeline.segmenters.get(name)
        segmenter.embed(image)  # the embedding is cached: only the decoder is measured

        def decode(batched: bool, shift=iter(range(10**6))) -> None:
            offset = next(shift) * 1e-3  # new boxes every call: the mask cache never answers
            segmenter.decode(image, [MaskPrompt.from_box(box + offset) for box in boxes], batched=batched)

        loop, batch = timed(lambda: decode(False), args.repeats), timed(lambda: decode(True), args.repeats)
        table.add(
            name,
            str(segmenter.device),
            f"{loop * 1000:.0f} ms",
            f"{batch * 1000:.0f} ms",
            f"{loop / batch:.2f}x",
            checks=[(BATCHED_WINS, loop / batch)],
        )
    finish(args, table)


if __name__ == "__main__":
    main()
