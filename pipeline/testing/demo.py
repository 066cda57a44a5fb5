"""``python app.py --demo``: the whole app on a fresh clone with no weights to download and no network: the
committed toy models (a Grounding DINO and a SAM trained on coloured-shape scenes, ``pipeline.testing.shapes``)
and generated example scenes. The UI says it runs toy models; they find shapes, not dogs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.settings import PipelineSettings

from . import shapes as S

NOTE = (
    "**Demo mode**: toy models trained on coloured shapes (red square, blue circle, green triangle, ...), "
    "not real detectors: try the example scenes."
)
# Seeds of generated 320x240 scenes on which the committed toy detector finds most shapes (it is below its
# target: docs/toy-models.md), so the first thing a new user sees works.
EXAMPLE_SEEDS = (36, 1, 9)


def demo_settings(settings: PipelineSettings) -> PipelineSettings:
    """``settings`` with the toy models (offline, CPU); registers the toy SAM as segmenter ``sam_shapes``."""
    S.register_shapes_sam()
    return replace(
        settings,
        detector=str(S.shapes_detector_dir()),
        device="cpu",
        input_size=S.SHAPES_INPUT_SIZE,
        offline=True,
        checkpoints={**settings.checkpoints, S.SHAPES_SEGMENTER: str(S.shapes_sam_checkpoint())},
    )


def demo_examples(directory: Path) -> list[tuple[str, str]]:
    """(image path, prompt) for a few generated scenes, written as PNGs under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    examples = []
    for seed in EXAMPLE_SEEDS:
        image, shapes = S.make_scene(np.random.default_rng(seed), size=(320, 240), shapes=3, min_size=0.25)
        path = directory / f"shapes-{seed}.png"
        image.save(path)
        examples.append((str(path), ". ".join(dict.fromkeys(shape.name for shape in shapes))))
    return examples
