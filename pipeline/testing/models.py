"""Random-initialised models of the real architectures, built offline and saved the way real weights are shipped.

Tests, benchmarks and the browser tests load them through the product's own loaders. "tiny" shapes keep tests
fast; "real" shapes (grounding-dino-tiny, SAM vit_b, MobileSAM vit_t) make benchmark timings meaningful.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from .tiny_sam import register_tiny_sam

# Grounding DINO hard-codes these ids: [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, "."=1012, "?"=1029.
_FIXED_TOKENS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}
# The detector's input short side in tests: 800 (the default) makes even the tiny model take ~1 s per image on CPU.
TEST_INPUT_SIZE = 320
WORDS = (
    "a an the on of in with and dog dogs cat cats possum fence brown black white red car person people tree "
    "bird box boxes apple berry sky grass house window chair table cup bottle ball"
).split()


def write_vocab(path: Path) -> Path:
    size = 1100 + len(WORDS) + 26 * 2
    tokens = [f"[unused{i}]" for i in range(size)]
    for index, token in _FIXED_TOKENS.items():
        tokens[index] = token
    extra = WORDS + list("abcdefghijklmnopqrstuvwxyz") + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    tokens[1100 : 1100 + len(extra)] = extra
    path.write_text("\n".join(tokens) + "\n")
    return path


# Written beside random weights, so the UI can say that their boxes mean nothing.
RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS.txt"


def save_grounding_dino(directory: Path, shape: str = "tiny", seed: int = 0, family: str = "grounding-dino") -> Path:
    """Save a random Grounding DINO (or, with ``family="mm-grounding-dino"``, MM-Grounding-DINO: the same interface,
    other weights) model + processor to ``directory`` (loadable with from_pretrained), marked with
    ``RANDOM_WEIGHTS_MARKER``."""
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        MMGroundingDinoConfig,
        MMGroundingDinoForObjectDetection,
        SwinConfig,
    )

    config_class, model_class = {
        "grounding-dino": (GroundingDinoConfig, GroundingDinoForObjectDetection),
        "mm-grounding-dino": (MMGroundingDinoConfig, MMGroundingDinoForObjectDetection),
    }[family]

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(vocab=str(write_vocab(directory / "vocab-src.txt")), do_lower_case=True)
    torch.manual_seed(seed)
    if shape == "tiny":
        swin = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], out_indices=[2, 3, 4])
        bert = BertConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
        config = config_class(
            backbone_config=swin,
            text_config=bert,
            d_model=32,
            num_queries=20,
            encoder_layers=1,
            decoder_layers=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
        )
    elif shape == "real":
        config = config_class(text_config=BertConfig(vocab_size=len(tokenizer)))
    else:
        raise ValueError(shape)
    model = model_class(config).eval()
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    (directory / RANDOM_WEIGHTS_MARKER).write_text(
        "Random weights from python -m pipeline.testing: for tests and "
        "trying the app offline; their boxes mean nothing.\n"
    )
    return directory


def save_mm_grounding_dino(directory: Path, shape: str = "tiny", seed: int = 0) -> Path:
    """Save a random MM-Grounding-DINO (the registry's random copy for that family)."""
    return save_grounding_dino(directory, shape, seed, family="mm-grounding-dino")


def save_sam2(directory: Path, shape: str = "tiny", seed: int = 0) -> Path:
    """Save a random SAM 2.1 model + processor to ``directory`` (what ``GROUNDLABEL_SAM2_1_HIERA_TINY_CHECKPOINT``
    names): "tiny" is 0.1 M parameters; "real" is sam2.1-hiera-tiny's shape."""
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2ImageProcessor,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2Processor,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    torch.manual_seed(seed)
    if shape == "tiny":  # the first block of a stage pools, so the global-attention block is a stage's second
        hiera = Sam2HieraDetConfig(
            hidden_size=8,
            blocks_per_stage=[1, 1, 2, 1],
            embed_dim_per_stage=[8, 16, 32, 64],
            num_attention_heads_per_stage=[1, 1, 1, 1],
            global_attention_blocks=[3],
        )
        config = Sam2Config(
            vision_config=Sam2VisionConfig(
                backbone_config=hiera, backbone_channel_list=[64, 32, 16, 8], fpn_hidden_size=32
            ),
            prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=32),
            mask_decoder_config=Sam2MaskDecoderConfig(
                hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32
            ),
        )
    elif shape == "real":
        config = Sam2Config()
    else:
        raise ValueError(shape)
    return _save_transformers(directory, Sam2Model(config), Sam2Processor(image_processor=Sam2ImageProcessor()))


def save_sam_hq(directory: Path, shape: str = "tiny", seed: int = 0) -> Path:
    """Save a random SAM-HQ model + processor to ``directory``: "tiny" is a 2-layer ViT of width 32; "real" is
    sam-hq-vit-base's shape."""
    from transformers import (
        SamHQConfig,
        SamHQMaskDecoderConfig,
        SamHQModel,
        SamHQProcessor,
        SamHQPromptEncoderConfig,
        SamHQVisionConfig,
        SamImageProcessor,
    )

    torch.manual_seed(seed)
    if shape == "tiny":
        config = SamHQConfig(
            vision_config=SamHQVisionConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                global_attn_indexes=[1],
                output_channels=32,
                num_pos_feats=16,
            ),
            prompt_encoder_config=SamHQPromptEncoderConfig(hidden_size=32),
            mask_decoder_config=SamHQMaskDecoderConfig(
                hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32, vit_dim=32
            ),
        )
    elif shape == "real":
        config = SamHQConfig()
    else:
        raise ValueError(shape)
    return _save_transformers(directory, SamHQModel(config), SamHQProcessor(image_processor=SamImageProcessor()))


def _save_transformers(directory: Path, model, processor) -> Path:
    """A random transformers segmenter saved as its Hub copy would be, marked as random."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    (directory / RANDOM_WEIGHTS_MARKER).write_text("Random weights: masks from this model mean nothing.\n")
    return directory


def save_segmenter(path: Path, name: str = "sam_tiny_test", seed: int = 0) -> Path:
    """Save a random state dict for segmenter ``name`` ('sam_tiny_test', 'mobile_sam', 'sam_vit_b', ...)."""
    import importlib

    from pipeline.registry import segmenter_spec

    register_tiny_sam()
    spec = segmenter_spec(name)
    torch.manual_seed(seed)
    model = importlib.import_module(spec.package).sam_model_registry[spec.model_type]()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def write_all(directory: Path, shape: str = "tiny", every: bool = False) -> dict[str, str]:
    """A random-weight copy of the detector and of the segmenters worth trying offline under ``directory``; the
    environment variables that make the app, the ML backend and the CLI use them. ``every``: one of each registered
    family too (the UI's Detector and Segmenter choices then load offline), by GROUNDLABEL_<NAME>_CHECKPOINT."""
    from pipeline.registry import DEFAULT_DETECTOR, DETECTORS, FAMILIES, SEGMENTERS, segmenter_spec

    detector = save_grounding_dino(directory / f"grounding-dino-{shape}", shape)
    segmenters = ["mobile_sam"] + (["sam_vit_b"] if shape == "real" else [])
    env = {"GROUNDLABEL_DETECTOR": str(detector), "GROUNDLABEL_SEGMENTER": "mobile_sam", "GROUNDLABEL_OFFLINE": "1"}
    for name in segmenters:
        spec = segmenter_spec(name)
        env[spec.env_var] = str(save_segmenter(directory / spec.filename, name))
    sam2 = segmenter_spec("sam2_1_hiera_tiny")  # a directory, as transformers saves it
    env[sam2.env_var] = str(save_sam2(directory / sam2.name, shape))
    if shape == "tiny":
        env["GROUNDLABEL_INPUT_SIZE"] = str(TEST_INPUT_SIZE)
    if every:
        made: dict[str, Path] = {DETECTORS[DEFAULT_DETECTOR].family: detector}  # one random copy per family
        for spec in DETECTORS.values():
            if spec.family not in made:
                made[spec.family] = FAMILIES[spec.family].save_random(directory / spec.family, shape)
            env[spec.env_var] = str(made[spec.family])
        savers = {"sam2": lambda path: Path(env[sam2.env_var]), "sam_hq": functools.partial(save_sam_hq, shape=shape)}
        for spec in (s for s in SEGMENTERS.values() if s.hub):
            if spec.model_type not in made:
                made[spec.model_type] = savers[spec.model_type](directory / spec.model_type)
            env[spec.env_var] = str(made[spec.model_type])
    return env


@functools.cache
def cached_models(root: str, shape: str = "tiny") -> tuple[Path, Path]:
    """(detector dir, tiny SAM checkpoint) under ``root``, built once per process."""
    base = Path(root)
    return save_grounding_dino(base / f"gdino-{shape}", shape), save_segmenter(base / "sam_tiny_test.pth")


def load_tiny_pipeline(detector_dir: Path, sam_checkpoint: Path | None = None):
    """A ``GroundingPipeline`` over saved tiny models, on the CPU, offline, at the tests' input size."""
    from pipeline import GroundingPipeline, PipelineSettings

    register_tiny_sam()
    checkpoints = {"sam_tiny_test": str(sam_checkpoint)} if sam_checkpoint else {}
    return GroundingPipeline.from_settings(
        PipelineSettings(
            detector=str(detector_dir), device="cpu", input_size=TEST_INPUT_SIZE, checkpoints=checkpoints, offline=True
        )
    )
