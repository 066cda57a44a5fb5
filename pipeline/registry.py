"""Models by short name, and detector families: what users type in the UI, the CLI and the environment, where each
model comes from, and which adapter runs each family. The one table the loaders, the UI, /health, ``model_version``,
``pipeline.testing`` and the benchmarks read.

A detector name (a registered short name, a Hub id or a local directory) is resolved once, at the settings edge
(``PipelineSettings``), into a ``DetectorSpec``; nothing below compares names. Adding a detector family = its
adapter module + one ``FAMILIES`` entry (+ a ``DETECTORS`` entry per model) + its tests. Adapters and random-weight
builders are named by dotted path, so importing this module imports no torch. Segmenters are the SAM family that
``segment_anything`` / ``mobile_sam`` build (a checkpoint file each) and SAM 2.1 and SAM-HQ through transformers (a Hub
id or a local directory each).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import SettingsError


@dataclass(frozen=True)
class Family:
    """A detector family: its config.json ``model_type``, the adapter class that runs it and what it can read."""

    name: str  # the config's model_type
    title: str  # what sentences call it
    adapter: str  # "module:Class" of its CachedDetector subclass, imported on first load
    random_copy: str  # "module:function" (directory, shape) -> directory: a random-weight copy for tests and benches
    reads_text_threshold: bool = False  # scores prompt tokens, so a text threshold picks a box's words
    makes_masks: bool = False  # instance masks from the detector itself (no segmenter runs)
    reads_exemplars: bool = False  # searches by example boxes (``Prompt.exemplars``) as well as by text
    runtimes: tuple[str, ...] = ("torch",)  # GROUNDLABEL_RUNTIME values it runs on; others are passed to the adapter
    trainable: bool = False  # ``pipeline.training``'s loss fits it: ``python -m sync.finetune`` can fine-tune it

    def adapter_class(self) -> type:
        return _named(self.adapter)

    def save_random(self, directory: Path, shape: str = "tiny") -> Path:
        """A random-weight copy of this family's architecture ("tiny", or "real": a real model's shape)."""
        return _named(self.random_copy)(directory, shape)


def _named(path: str) -> Callable:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


FAMILIES = {
    family.name: family
    for family in (
        Family(
            "grounding-dino",
            "Grounding DINO",
            "pipeline.detector:GroundingDinoDetector",
            "pipeline.testing.models:save_grounding_dino",
            reads_text_threshold=True,
            runtimes=("torch", "openvino"),
            trainable=True,
        ),
        Family(
            "mm-grounding-dino",
            "MM-Grounding-DINO",
            "pipeline.detector:GroundingDinoDetector",
            "pipeline.testing.models:save_mm_grounding_dino",
            reads_text_threshold=True,
            trainable=True,
        ),
        Family(
            "owlv2",
            "OWLv2",
            "pipeline.open_vocab:Owlv2Detector",
            "pipeline.testing.detectors:save_owlv2",
            reads_exemplars=True,
        ),
        Family(
            "omdet-turbo",
            "OmDet-Turbo",
            "pipeline.open_vocab:OmDetTurboDetector",
            "pipeline.testing.detectors:save_omdet_turbo",
        ),
        # text -> boxes *and* masks in one model
        Family(
            "sam3",
            "SAM 3",
            "pipeline.sam3:Sam3Detector",
            "pipeline.testing.detectors:save_sam3",
            makes_masks=True,
            reads_exemplars=True,
        ),
    )
}


@dataclass(frozen=True)
class DetectorSpec:
    """One detector model, whatever name it was asked by: ``DETECTORS`` holds the registered ones; ``resolve_detector``
    makes one for any name, with its local copy. ``name`` is the one identity (UI, /health, ``model_version``)."""

    name: str  # a registered short name (grounding-dino-tiny, ...), else a Hub id's or directory's last part
    source: str  # the Hub id, or the directory that was named
    licence: str = ""
    family: str | None = "grounding-dino"  # config model_type; None: unknown without a download (an unregistered id)
    gated: bool = False  # the Hub asks for an access request (and HF_TOKEN) before the download
    local: str | None = None  # its local copy (a save_pretrained directory), loaded instead of ``source``

    @property
    def load_from(self) -> str:
        """What the loader opens: the local copy when there is one, else the Hub id or directory."""
        return self.local or self.source

    @property
    def env_var(self) -> str:
        """GROUNDLABEL_<NAME>_CHECKPOINT: a local copy (a save_pretrained directory) used instead of the Hub."""
        return checkpoint_variable(self.name)

    @property
    def family_entry(self) -> Family | None:
        return FAMILIES.get(self.family or "")

    @property
    def reads_text_threshold(self) -> bool:
        """Grounding DINO scores tokens, so a text threshold picks a box's words; the others score whole phrases.
        A family not known yet (an unregistered Hub id) is taken for Grounding DINO, which does."""
        entry = self.family_entry
        return entry.reads_text_threshold if entry else True

    @property
    def makes_masks(self) -> bool:
        """The detector makes the masks itself (SAM 3): no segmenter runs, and ``model_version`` says ``+masks``."""
        entry = self.family_entry
        return entry.makes_masks if entry else False

    @property
    def reads_exemplars(self) -> bool:
        """The detector searches by example boxes; a family not known yet is taken for Grounding DINO, which does not."""
        entry = self.family_entry
        return entry.reads_exemplars if entry else False


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


def exemplars_refused(spec: DetectorSpec) -> str:
    """The sentence for example boxes given to a detector that cannot search by example."""
    able = [f"{FAMILIES[d.family].title} ({d.name})" for d in DETECTORS.values() if d.reads_exemplars and d.family]
    return (
        f"{spec.name} cannot search by example boxes; pick {' or '.join(able)} as the detector, or search by text only."
    )


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
DEFAULT_DETECTOR = "grounding-dino-tiny"

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
    """The registered detector a short name or Hub id stands for, if any."""
    return DETECTORS.get(name) or next((spec for spec in DETECTORS.values() if spec.source == name), None)


def detector_source(name: str) -> str:
    """A registered short name -> its Hub id; anything else (a Hub id, a local directory) as it is."""
    return DETECTORS[name].source if name in DETECTORS else name


def resolve_detector(name: str, checkpoints: Mapping[str, str] | None = None) -> DetectorSpec:
    """The one spec for a detector name: a registered short name or Hub id gives its registry entry, with its local
    copy from ``checkpoints`` (keyed by short name) when one is set; any other Hub id or directory a spec of its
    own, its family read from its config.json when that is on this machine (no network)."""
    registered = detector_spec(name)
    if registered is not None:
        local = (checkpoints or {}).get(registered.name)
        return replace(registered, local=local) if local else registered
    return DetectorSpec(name.rstrip("/\\").replace("\\", "/").split("/")[-1], name, family=_local_family(name))


def _local_family(model_id: str) -> str | None:
    """The model_type a directory's (or the Hugging Face cache's) config.json names; None when unknown offline."""
    config = Path(model_id) / "config.json"
    if not config.is_file():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(model_id, "config.json")
        except ValueError:  # not a valid repo id (e.g. a directory that does not exist)
            return None
        if not isinstance(cached, str):
            return None
        config = Path(cached)
    return json.loads(config.read_text()).get("model_type")


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
