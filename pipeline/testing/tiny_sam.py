"""The tests' tiny SAM ('sam_tiny_test'): registered by name without importing torch, so a test process that only
needs the name (``Options(segmenter="sam_tiny_test")``) stays light; built only when a test loads it."""

from __future__ import annotations

from pipeline.registry import SegmenterSpec, register_segmenter

NAME = "sam_tiny_test"


def _tiny_sam(checkpoint=None):
    """SAM's real building blocks at a toy width."""
    from segment_anything.build_sam import _build_sam

    return _build_sam(
        encoder_embed_dim=32,
        encoder_depth=1,
        encoder_num_heads=2,
        encoder_global_attn_indexes=[0],
        checkpoint=checkpoint,
    )


# What the product's SAM loader reads from a spec's package (as from segment_anything's): model type -> builder.
sam_model_registry = {"vit_tiny_test": _tiny_sam}


def register_tiny_sam() -> None:
    """Make 'sam_tiny_test' a segmenter name the product can resolve and build (with a checkpoint path)."""
    register_segmenter(SegmenterSpec(NAME, __name__, "vit_tiny_test", f"{NAME}.pth", "http://127.0.0.1:9/none.pth"))
