"""Controls both tabs share: output kind and segmenter, threshold sliders."""

from __future__ import annotations

import gradio as gr

from pipeline import DEFAULT_BOX_THRESHOLD, DEFAULT_NMS_THRESHOLD, DEFAULT_TEXT_THRESHOLD, DETECTORS, Options
from pipeline.families import reads_text_threshold
from pipeline.registry import detector_source

from .models import segmenter_choices

BOXES, MASKS = "Boxes", "Boxes + masks"


def threshold_sliders(prefix: str, text_visible: bool = True) -> tuple[gr.Slider, gr.Slider, gr.Slider]:
    """Box, text and duplicate (NMS) threshold sliders, side by side (their moves re-filter cached detector output);
    the text one hidden for a detector that has no text threshold."""
    with gr.Row():
        box = gr.Slider(
            0.0,
            1.0,
            value=DEFAULT_BOX_THRESHOLD,
            step=0.001,
            label="Box threshold",
            info="Minimum box score",
            min_width=200,
            elem_id=f"{prefix}-box",
        )
        text = gr.Slider(
            0.0,
            1.0,
            value=DEFAULT_TEXT_THRESHOLD,
            step=0.001,
            label="Text threshold",
            info="Minimum word score in a phrase",
            min_width=200,
            elem_id=f"{prefix}-text",
            visible=text_visible,
        )
        nms = gr.Slider(
            0.0,
            1.0,
            value=DEFAULT_NMS_THRESHOLD,
            step=0.01,
            label="Duplicate overlap",
            info="Boxes of one label overlapping more keep the best (1: keep all)",
            min_width=200,
            elem_id=f"{prefix}-nms",
        )
    return box, text, nms


def label_thresholds_field(prefix: str) -> gr.Textbox:
    """Per-label box thresholds as text ("cat=0.4, dog=0.5"): Enter re-filters cached detector output."""
    return gr.Textbox(
        label="Per-label box thresholds",
        placeholder="cat=0.4, dog=0.5",
        info="A label's own minimum box score instead of the box threshold (a prompt's cat@0.4 wins)",
        max_lines=1,
        elem_id=f"{prefix}-label-thresholds",
    )


def output_controls(prefix: str, default_segmenter: str) -> tuple[gr.Radio, gr.Dropdown]:
    """Boxes or boxes + masks, and which segmenter draws the masks."""
    with gr.Row():
        mode = gr.Radio([BOXES, MASKS], value=BOXES, label="Output", scale=3, min_width=240, elem_id=f"{prefix}-mode")
        segmenter = gr.Dropdown(
            segmenter_choices(),
            value=default_segmenter,
            label="Segmenter",
            scale=2,
            min_width=150,
            elem_id=f"{prefix}-segmenter",
        )
    return mode, segmenter


def detector_dropdown(prefix: str, app_detector: str) -> gr.Dropdown:
    """The app's detector (its setting: a name, Hub id or directory) first, then every other registered one."""
    others = [name for name, spec in DETECTORS.items() if spec.source != detector_source(app_detector)]
    return gr.Dropdown(
        [(f"{app_detector} (this app's)", ""), *[(name, name) for name in others]],
        value="",
        label="Detector",
        info="Another one loads on first use, beside this app's",
        elem_id=f"{prefix}-detector",
    )


def show_text_threshold(text: gr.Slider, detector: gr.Dropdown, app_detector: str) -> None:
    """Hide the text threshold while the chosen detector has none (OWLv2, OmDet-Turbo, SAM 3 score whole phrases)."""
    detector.change(
        lambda choice: gr.Slider(visible=reads_text_threshold(choice or app_detector)), [detector], [text], queue=False
    )


def chosen_segmenter(mode: str, segmenter: str) -> str | None:
    """The segmenter to run: the dropdown's choice when masks are asked for, else none."""
    return segmenter if mode == MASKS else None


def chosen_options(
    mode: str,
    segmenter: str,
    box: float,
    text: float,
    detector: str | None,
    nms: float = DEFAULT_NMS_THRESHOLD,
    label_thresholds: str | None = "",
) -> Options:
    """The request the output, threshold and detector controls ask for (``detector`` "" or None: the app's own;
    ``label_thresholds`` the per-label field's text)."""
    return Options(
        box,
        text,
        chosen_segmenter(mode, segmenter),
        detector or None,
        nms_threshold=nms,
        label_thresholds=label_thresholds or (),
    )
