"""Models by short name: what users type in the UI, the CLI and the environment, and where each one comes from.

The UI's dropdowns, ``python -m pipeline --masks``, the ML backend's settings and ``pipeline.testing`` (which
writes a random-weight copy of each) all read these tables. Any Hub id or local directory still works as a
detector; segmenters are the SAM family that ``segment_anything`` / ``mobile_sam`` build (a checkpoint file each) and
SAM 2.1 and SAM-HQ through transformers (a Hub id or a local directory each).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SettingsError


@dataclass(frozen=True)
class DetectorSpec:
    name: str  # what users type: grounding-dino-tiny, ...
    source: str  # Hugging Face Hub id
    licence: str
    family: str = "grounding-dino"  # the model's config model_type: which detector class runs it
    gated: bool = False  # the Hub asks for an access request (and HF_TOKEN) before the download

    @property
    def env_var(self) -> str:
        """GROUNDLABEL_<NAME>_CHECKPOINT: a local copy (a save_pretrained directory) used instead of the Hub."""
        return checkpoint_variable(self.name)

    @property
    def reads_text_threshold(self) -> bool:
        """Grounding DINO scores tokens, so a text threshold picks a box's words; the others score whole phrases."""
        return self.family in ("grounding-dino", "mm-grounding-dino")


@dataclass(frozen=True)
class SegmenterSpec:
    name: str  # what users type: sam_vit_b, mobile_sam, ...
    package: str  # module whose sam_model_registry builds it
    model_type: str  # key in that registry
    filename: str
    url: str
    # the names Label Studio's example backends read this checkpoint from (grounding_sam, segment_anything_model)
    seed_env_vars: tuple[str, ...] = ()
    licence: str = "Apache-2.0"
    hub: str = ""  # transformers models (SAM 2.1, SAM-HQ): the Hub id; their local copy is a directory, not a file

    @property
    def source(self) -> str:
        """Where its weights come from: the Hub id, or the checkpoint file's download URL."""
        return self.hub or self.url

    @property
    def env_var(self) -> str:
        return checkpoint_variable(self.name)


def checkpoint_variable(name: str) -> str:
    """GROUNDLABEL_<NAME>_CHECKPOINT for a registered model: upper case, anything but letters and digits as '_'."""
    return f"GROUNDLABEL_{re.sub(r'[^A-Z0-9]', '_', name.upper())}_CHECKPOINT"


DETECTORS = {
    spec.name: spec
    for spec in (
        DetectorSpec("grounding-dino-tiny", "IDEA-Research/grounding-dino-tiny", "Apache-2.0"),
        DetectorSpec("grounding-dino-base", "IDEA-Research/grounding-dino-base", "Apache-2.0"),
        DetectorSpec(
            "mm-grounding-dino-tiny",
            "openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg_v3det",
            "Apache-2.0",
            "mm-grounding-dino",
        ),
        DetectorSpec("owlv2-base", "google/owlv2-base-patch16-ensemble", "Apache-2.0", "owlv2"),
        DetectorSpec("omdet-turbo", "omlab/omdet-turbo-swin-tiny-hf", "Apache-2.0", "omdet-turbo"),
        # text -> boxes *and* masks in one model (pipeline/sam3.py); gated on the Hub, under Meta's SAM License
        DetectorSpec("sam3", "facebook/sam3", "SAM License (gated)", "sam3", gated=True),
    )
}
DEFAULT_DETECTOR = DETECTORS["grounding-dino-tiny"].source

_META = "https://dl.fbaipublicfiles.com/segment_anything/"
SEGMENTERS = {
    spec.name: spec
    for spec in (
        SegmenterSpec("sam_vit_b", "segment_anything", "vit_b", "sam_vit_b_01ec64.pth", _META + "sam_vit_b_01ec64.pth"),
        SegmenterSpec("sam_vit_l", "segment_anything", "vit_l", "sam_vit_l_0b3195.pth", _META + "sam_vit_l_0b3195.pth"),
        SegmenterSpec(
            "sam_vit_h",
            "segment_anything",
            "vit_h",
            "sam_vit_h_4b8939.pth",
            _META + "sam_vit_h_4b8939.pth",
            ("SAM_CHECKPOINT", "VITH_CHECKPOINT"),
        ),
        SegmenterSpec(
            "mobile_sam",
            "mobile_sam",
            "vit_t",
            "mobile_sam.pt",
            "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
            ("MOBILESAM_CHECKPOINT",),
        ),
    )
}
SEGMENTERS.update(
    {  # SAM 2.1 through transformers: a Hub id (or a local directory) each
        spec.name: spec
        for spec in (
            SegmenterSpec(
                f"sam2_1_hiera_{size.replace('-', '_')}",
                "transformers",
                "sam2",
                "",
                f"https://huggingface.co/facebook/sam2.1-hiera-{size}",
                hub=f"facebook/sam2.1-hiera-{size}",
            )
            for size in ("tiny", "small", "base-plus", "large")
        )
    }
)
SEGMENTERS.update(
    {  # SAM-HQ through transformers: SAM's architecture with a high-quality output token
        spec.name: spec
        for spec in (
            SegmenterSpec(
                f"sam_hq_vit_{size[0]}",
                "transformers",
                "sam_hq",
                "",
                f"https://huggingface.co/syscv-community/sam-hq-vit-{size}",
                hub=f"syscv-community/sam-hq-vit-{size}",
            )
            for size in ("base", "large", "huge")
        )
    }
)
_ALIASES = {
    "sam2": "sam2_1_hiera_tiny",
    "sam2_1": "sam2_1_hiera_tiny",
    "vit_b": "sam_vit_b",
    "vit_l": "sam_vit_l",
    "vit_h": "sam_vit_h",
    "sam": "sam_vit_b",
    "vit_t": "mobile_sam",
    "mobilesam": "mobile_sam",
}


def detector_spec(name: str) -> DetectorSpec | None:
    """The registered detector a name or Hub id stands for, if any."""
    return DETECTORS.get(name) or next((spec for spec in DETECTORS.values() if spec.source == name), None)


def detector_source(name: str) -> str:
    """A registered short name -> its Hub id; anything else (a Hub id, a local directory) as it is."""
    return DETECTORS[name].source if name in DETECTORS else name


def segmenter_spec(name: str) -> SegmenterSpec:
    """The spec for a segmenter name or alias; ``SettingsError`` listing the choices for an unknown one."""
    key = str(name).lower().replace("-", "_").replace("sam2.1", "sam2_1")
    key = _ALIASES.get(key, key)
    if key not in SEGMENTERS:
        raise SettingsError(f"Unknown segmenter {name!r}; choose one of {', '.join(SEGMENTERS)}.")
    return SEGMENTERS[key]


def register_segmenter(spec: SegmenterSpec) -> None:
    """Add a segmenter (e.g. ``pipeline.testing``'s toy models) so every name lookup finds it."""
    SEGMENTERS[spec.name] = spec
