"""SAM 3 as a detector: text -> boxes, scores *and* instance masks in one model (transformers' ``Sam3Model``).

It reads one phrase per pass, so "dog. cat" is one decoder pass per phrase; the phrases of a prompt go through
together as one batch over the image's features, which are computed once per image and cached, so a new prompt
on the same image runs no vision encoder. Raw outputs (scores, boxes, low-resolution mask logits) are cached per
(image, prompt) like the other detectors', so a new score threshold runs no model. To keep that cache small, only
queries scoring above ``SCORE_FLOOR`` are kept: a box threshold below it gives what the floor gives.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .cache import LRUCache
from .detector import FilteredDetections, RawDetections, TokenizedPrompt, clip_boxes
from .images import LoadedImage
from .open_vocab import PhraseDetector
from .options import Options

SCORE_FLOOR = 0.05  # queries scoring at most this are not kept (a real SAM 3 has 200 per phrase, 288x288 masks each)
MASK_THRESHOLD = 0.5  # transformers' default: a pixel belongs to the mask when its probability is above this


class Sam3Detector(PhraseDetector):
    """Boxes, scores and masks per prompt phrase (its registry family ``makes_masks``); no text threshold."""

    def __init__(self, *args, vision_cache_items: int = 4, **kwargs):
        from transformers import AutoProcessor, Sam3Model

        self.loaders = (AutoProcessor, Sam3Model)
        super().__init__(*args, **kwargs)
        self._vision: LRUCache = LRUCache(vision_cache_items)  # image sha1 -> the vision encoder's output
        self.vision_runs = 0  # vision encoder runs: a new prompt on a cached image adds none

    def preprocess(self, image: LoadedImage) -> dict:
        return {"image": image}  # resized inside ``_features``, only when the image's features are not cached

    def _group_key(self, pixels: dict) -> tuple:
        return (pixels["image"].sha1,)  # one image per pass: its phrases are the batch

    def _features(self, image: LoadedImage):
        found = self._vision.get(image.sha1)
        if found is None:
            pixels = self.processor.image_processor(images=[image.pil], return_tensors="pt")["pixel_values"]
            with self._model_lock, torch.inference_mode():
                found = self.model.get_vision_features(pixel_values=self._inputs({"p": pixels})["p"])
            self.vision_runs += 1
            self._vision.put(image.sha1, found)
        return found

    def _forward(self, pixels: list[dict], tokens: TokenizedPrompt) -> list[RawDetections]:
        features = self._features(pixels[0]["image"])
        phrases = len(tokens.prompt.phrases)
        text = self.phrase_inputs(tokens)
        batch = type(features)(
            **{
                name: tuple(x.expand(phrases, *x.shape[1:]) for x in value)
                if isinstance(value, tuple)
                else value.expand(phrases, *value.shape[1:])
                for name, value in features.items()
                if value is not None
            }
        )
        with self._model_lock, torch.inference_mode():
            out = self.model(vision_embeds=batch, **self._inputs(dict(text)))
        scores = out.pred_logits.float().sigmoid()
        if out.presence_logits is not None:
            scores = scores * out.presence_logits.float().sigmoid()
        phrase, query = (scores > SCORE_FLOOR).nonzero(as_tuple=True)
        kept = scores[phrase, query].cpu()
        logits = torch.full((len(kept), phrases), -torch.inf)  # each kept query scores only its own phrase
        logits[torch.arange(len(kept)), phrase.cpu()] = kept.log() - (-kept).log1p()
        return [
            RawDetections(
                logits,
                out.pred_boxes[phrase, query].float().cpu(),
                tokens,
                masks=out.pred_masks[phrase, query].float().cpu(),
            )
        ]

    def postprocess(self, raw: RawDetections, width: int, height: int, options: Options) -> FilteredDetections:
        """Score threshold on the cached queries; boxes (normalised corners) in pixels; masks, when masks are asked
        for, as transformers makes them: probabilities resized to the image, above ``MASK_THRESHOLD``."""
        scores, phrase = raw.logits.sigmoid().max(dim=-1)
        keep = scores > options.box_threshold
        corners = raw.boxes[keep].reshape(-1, 4) * torch.tensor([width, height, width, height])
        xyxy = clip_boxes(corners.numpy().astype(np.float32), width, height)
        masks = None
        if options.segmenter and keep.any():
            probabilities = raw.masks[keep].float().sigmoid()[None]
            masks = (
                F.interpolate(probabilities, size=(height, width), mode="bilinear", align_corners=False)[0]
                > MASK_THRESHOLD
            ).numpy()
        elif options.segmenter:
            masks = np.zeros((0, height, width), dtype=bool)
        index = phrase[keep].numpy().astype(np.int64)
        return FilteredDetections(
            xyxy=xyxy,
            scores=scores[keep].numpy().astype(np.float32),
            phrases=[raw.tokens.prompt.phrases[i] for i in index],
            phrase_index=index,
            masks=masks,
        )
