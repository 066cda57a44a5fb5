"""SAM 3 as a detector: text -> boxes, scores *and* instance masks in one model (transformers' ``Sam3Model``).

It reads one phrase per pass, so "dog. cat" is one decoder pass per phrase; the phrases of a prompt go through
together as one batch over the image's features, which are computed once per image and cached, so a new prompt
on the same image runs no vision encoder. Example boxes drawn on the image searched join their label's phrase (or
stand alone as a "visual" concept) through SAM 3's own geometry encoder, positive or negative. Raw outputs (scores,
boxes, low-resolution mask logits) are cached per (image, prompt) like the other detectors', so a new score threshold
runs no model. To keep that cache small, only
queries scoring above ``SCORE_FLOOR`` are kept: a box threshold below it gives what the floor gives.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .cache import LRUCache
from .detector import FilteredDetections, RawDetections, TokenizedPrompt, clip_boxes
from .errors import ExemplarError
from .images import LoadedImage
from .open_vocab import PhraseDetector
from .options import Options
from .prompts import ExemplarQuery, Prompt

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
        """One decoder pass over the concepts (the prompt's names) without example boxes, one over those with them:
        transformers reads every concept of a pass with boxes through its geometry encoder."""
        image, names = pixels[0]["image"], tokens.prompt.names
        features = self._features(image)
        boxes = self._concept_boxes(tokens.prompt, image)
        scores, pred_boxes, masks, concept = [], [], [], []
        for concepts in filter(None, ([i for i in range(len(names)) if i not in boxes], sorted(boxes))):
            texts = [names[i] if i < len(tokens.prompt.phrases) else "visual" for i in concepts]  # "visual": boxes only
            out = self._decode(features, texts, [boxes[i] for i in concepts] if concepts[0] in boxes else None)
            found = out.pred_logits.float().sigmoid()
            if out.presence_logits is not None:
                found = found * out.presence_logits.float().sigmoid()
            row, query = (found > SCORE_FLOOR).nonzero(as_tuple=True)
            scores.append(found[row, query].cpu())
            pred_boxes.append(out.pred_boxes[row, query].float().cpu())
            masks.append(out.pred_masks[row, query].float().cpu())
            concept.append(torch.tensor(concepts, dtype=torch.long)[row.cpu()])
        kept, concept = torch.cat(scores), torch.cat(concept)
        logits = torch.full((len(kept), len(names)), -torch.inf)  # each kept query scores only its own concept
        logits[torch.arange(len(kept)), concept] = kept.log() - (-kept).log1p()
        return [RawDetections(logits, torch.cat(pred_boxes), tokens, masks=torch.cat(masks))]

    def _decode(self, features, texts: list[str], boxes: list[list[tuple[list[float], int]]] | None):
        """The decoder over one image's cached features, one concept per text (with its example boxes, if any)."""
        inputs = dict(
            self.processor.tokenizer(
                texts, padding="max_length", max_length=self.max_phrase_tokens, truncation=True, return_tensors="pt"
            )
        )
        if boxes is not None:
            most = max(map(len, boxes))
            inputs["input_boxes"] = torch.zeros((len(texts), most, 4))
            inputs["input_boxes_labels"] = torch.full((len(texts), most), -10, dtype=torch.long)  # -10: padding
            for i, row in enumerate(boxes):
                for j, (box, positive) in enumerate(row):
                    inputs["input_boxes"][i, j] = torch.tensor(box)
                    inputs["input_boxes_labels"][i, j] = positive
        batch = type(features)(
            **{
                name: tuple(x.expand(len(texts), *x.shape[1:]) for x in value)
                if isinstance(value, tuple)
                else value.expand(len(texts), *value.shape[1:])
                for name, value in features.items()
                if value is not None
            }
        )
        with self._model_lock, torch.inference_mode():
            return self.model(vision_embeds=batch, **self._inputs(inputs))

    @staticmethod
    def _concept_boxes(prompt: Prompt, image: LoadedImage) -> dict[int, list[tuple[list[float], int]]]:
        """Per name (concept), its example boxes as SAM 3 reads them: normalised (cx, cy, w, h) and 1 (positive) or
        0 (negative). A negative example whose label names no concept counts against every concept."""
        names, width, height = prompt.names, image.width, image.height
        rows: dict[int, list[tuple[list[float], int]]] = {}
        for exemplar in prompt.exemplars:
            if isinstance(exemplar, ExemplarQuery) or (exemplar.image and exemplar.image.sha1 != image.sha1):
                raise ExemplarError(
                    f"SAM 3 reads example boxes on the image searched only (the box for {exemplar.label!r} is not): "
                    "draw it on this image, or pick OWLv2 to search by an example from another image."
                )
            exemplar.check_on(width, height)
            x1, y1, x2, y2 = exemplar.xyxy
            centre_size = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
            box = (centre_size, int(exemplar.positive))
            for i in [names.index(exemplar.label)] if exemplar.label in names else range(len(names)):
                rows.setdefault(i, []).append(box)
        return rows

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
            phrases=[raw.tokens.prompt.names[i] for i in index],
            phrase_index=index,
            masks=masks,
        )
