"""Training Grounding DINO-family detectors: the one loss, optimiser, schedule and step loop that both the toy
models' trainer (``pipeline.testing.train``: generated scenes) and ``python -m sync.finetune`` (a Label Studio
project's annotations) run. Callers bring the batches; this module knows nothing about where they come from.

A batch is ``(inputs, labels)``: the model's keyword inputs (``pixel_values``, ``pixel_mask``, ``input_ids``,
``attention_mask``, ``token_type_ids``) and per image ``{"class_labels": phrase index per box, "boxes": (n, 4)
cx, cy, w, h normalised by the image's own width and height}``, as transformers' Grounding DINO reads them.

Why not transformers' own loss: in transformers 5.x ``GroundingDinoImageLoss._get_target_classes_one_hot`` offsets
each image's class labels by ``len(label_maps[i])`` instead of the running total, so with a batch of more than two
images the classification targets of images 2.. point into image 1's phrases. The loss below matches per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

Batch = tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]


def _focal(logits, targets, alpha=0.25, gamma=2.0):
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    return (alpha * targets + (1 - alpha) * (1 - targets)) * loss


def _xyxy(b):
    return torch.cat([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def _giou(a, b):
    from torchvision.ops import generalized_box_iou

    return generalized_box_iou(_xyxy(a), _xyxy(b))


def _set_loss(logits, boxes, label_maps, text_mask, targets):
    """DETR-style set loss for one decoder stage: Hungarian matching per image on focal class cost (over the
    phrase's tokens) + L1 + GIoU, then focal loss on every real token of every query, L1 and GIoU on matches."""
    from scipy.optimize import linear_sum_assignment

    batch, queries, tokens = logits.shape
    onehot = torch.zeros_like(logits)
    src = []
    with torch.no_grad():
        prob = logits.sigmoid()
        for b, target in enumerate(targets):
            n = len(target["class_labels"])
            if n == 0:
                continue
            maps = label_maps[b][target["class_labels"]].float()
            maps_norm = maps / maps.sum(-1, keepdim=True).clamp(min=1)
            p = prob[b].nan_to_num(0.0)
            neg = 0.75 * p**2 * -(1 - p + 1e-8).log()
            pos = 0.25 * (1 - p) ** 2 * -(p + 1e-8).log()
            cost = (pos - neg) @ maps_norm.t() * 2.0
            cost = cost + 5.0 * torch.cdist(boxes[b], target["boxes"], p=1) - 2.0 * _giou(boxes[b], target["boxes"])
            qi, ti = linear_sum_assignment(cost.nan_to_num(1e6).cpu().numpy())
            onehot[b, qi] = maps[ti]
            src.append((b, torch.as_tensor(qi), target["boxes"][ti]))
    num = max(1, sum(len(t["class_labels"]) for t in targets))
    cls = _focal(logits[text_mask], onehot[text_mask]).sum() / num
    # Which phrase: a softmax over each matched query's text tokens. Unlike the focal loss it gains nothing from a
    # direction shared by all words, so the text features cannot collapse onto one "any shape" vector (they did
    # within 500 steps without it: every word token ended up with the same feature and the prompt stopped mattering).
    rows = [(b, torch.as_tensor(q)) for b, q, _ in src]
    if rows:
        chosen = torch.cat([logits[b, q] for b, q in rows])
        valid = torch.cat([text_mask[b, q] for b, q in rows])
        positive = torch.cat([onehot[b, q] for b, q in rows]) > 0
        masked = chosen.masked_fill(~valid, float("-inf"))
        which = (masked.logsumexp(-1) - masked.masked_fill(~positive, float("-inf")).logsumexp(-1)).sum() / num
    else:
        which = logits.new_zeros(())
    if src:
        pred = torch.cat([boxes[b, q] for b, q, _ in src])
        true = torch.cat([t for _, _, t in src])
        l1 = F.l1_loss(pred, true, reduction="sum") / num
        giou = (1 - torch.diag(_giou(pred, true))).sum() / num
    else:
        l1 = giou = boxes.sum() * 0
    return 2.0 * cls + 1.0 * which + 5.0 * l1 + 2.0 * giou, which.detach()


def loss_function(
    logits,
    labels,
    device,
    pred_boxes,
    config,
    label_maps,
    text_mask,
    outputs_class=None,
    outputs_coord=None,
    encoder_logits=None,
    encoder_pred_boxes=None,
    **_,
):
    """The model's ``loss_function`` (transformers calls it with these arguments): the set loss on the last decoder
    stage, every earlier stage and the encoder's proposals."""
    total, cls = _set_loss(logits, pred_boxes, label_maps, text_mask, labels)
    for level in range(outputs_class.shape[0] - 1):
        aux, _ = _set_loss(outputs_class[level], outputs_coord[level], label_maps, text_mask, labels)
        total = total + aux
    if encoder_logits is not None:
        enc_mask = text_mask[:, :1].expand(-1, encoder_logits.shape[1], -1)
        enc, _ = _set_loss(encoder_logits, encoder_pred_boxes, label_maps, enc_mask, labels)
        total = total + enc
    return total, {"loss_ce": cls}, None


def optimise(loss: torch.Tensor, model: torch.nn.Module, optimizer, schedule, clip: float) -> float:
    """One optimiser step on ``loss`` (gradients clipped to ``clip``); the loss's value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    schedule.step()
    return loss.item()


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps, then a cosine down to 2 % of the peak at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def optimizer_for(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float,
    steps: int,
    warmup: int,
    start: int = 0,
    state: dict | None = None,
):
    """AdamW at peak ``lr`` and its warmup-cosine schedule over ``steps``, positioned at step ``start``; ``state``
    (an optimizer's ``state_dict``) continues an interrupted run's moments."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if state is not None:
        optimizer.load_state_dict(state)
        for group in optimizer.param_groups:  # the schedule below sets the rate from the step, not the saved one
            group["lr"] = group["initial_lr"] = lr
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(start + s, steps, warmup))
    return optimizer, schedule


def train_steps(
    model: torch.nn.Module,
    batch_at: Callable[[int], Batch],
    optimizer,
    schedule,
    *,
    steps: int,
    start: int = 0,
    clip: float = 1.0,
    device: torch.device | str = "cpu",
    after_step: Callable[[int, float], bool] = lambda step, loss: False,
) -> int:
    """Train ``model`` from step ``start`` to ``steps`` on ``batch_at(step)``; ``after_step(step, loss)`` runs after
    each step and ends the loop by returning True. Returns the number of steps done in all (``start`` + this run's)."""
    model.loss_function = loss_function
    model.to(device).train()
    done = start
    for step in range(start, steps):
        inputs, labels = batch_at(step)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        labels = [{k: v.to(device) for k, v in label.items()} for label in labels]
        value = optimise(model(**inputs, labels=labels).loss, model, optimizer, schedule, clip)
        done = step + 1
        if after_step(step, value):
            break
    return done


def save_detector(model: torch.nn.Module, processor, directory: Path) -> Path:
    """``save_pretrained`` of the model (a clean copy in eval mode: no training hooks) and its processor."""
    directory.mkdir(parents=True, exist_ok=True)
    clean = type(model)(model.config)
    clean.load_state_dict(model.state_dict())
    clean.eval().save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
