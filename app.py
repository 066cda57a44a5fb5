"""groundlabel: one process, one port: the Gradio UI and Label Studio's ML-backend routes on one FastAPI app."""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import gradio as gr
import uvicorn
from fastapi import FastAPI

from pipeline import GroundlabelError, LazyPipeline
from pipeline.console import quiet_known_warnings
from pipeline.testing.demo import NOTE as DEMO_NOTE
from pipeline.testing.demo import demo_examples, demo_settings
from pipeline.testing.shapes import SHAPES_BOX_THRESHOLD, SHAPES_SEGMENTER, SHAPES_TEXT_THRESHOLD
from sync import BackendSettings
from sync.backend import create_router
from ui.api import hide_the_rest, public_api
from ui.labelstudio import labelstudio_tab
from ui.models import ModelHub, load_models
from ui.playground import playground_tab
from ui.theme import CANVAS_JS, CSS, KEYS_JS, THEME
from ui.video import video_tab


def build_ui(hub: ModelHub, settings: BackendSettings, examples: list[tuple[str, str]] | None = None) -> gr.Blocks:
    """The Gradio UI: model status on top, then the playground (with ``examples``, by default Gradio's example
    photos), the video tab and the Label Studio review tabs."""
    with gr.Blocks(title="groundlabel") as demo:
        public_api(hub)  # first: the names /detect and /refine are the public API's
        with gr.Row(elem_id="gl-header", equal_height=True):
            gr.Markdown(
                "## groundlabel\nType what you look for, review the boxes, push them to Label Studio.",
                elem_id="gl-title",
            )
            with gr.Column(scale=2, elem_id="gl-status-box"):
                model_status = gr.Markdown(hub.status_markdown, elem_id="model-status")
            load = gr.Button("Load models", size="sm", scale=0, min_width=120, elem_id="load-models")
        with gr.Tabs():
            with gr.Tab("Playground", id="playground", elem_id="tab-playground"):
                playground_tab(hub, model_status, examples)
            with gr.Tab("Video", id="video", elem_id="tab-video"):
                video_tab(hub, model_status)
            with gr.Tab("Label Studio", id="labelstudio", elem_id="tab-labelstudio"):
                labelstudio_tab(hub, model_status, settings)
        load.click(load_models(hub), outputs=model_status, concurrency_id="model")
    hide_the_rest(demo)
    return demo


def create_app(settings: BackendSettings, models: LazyPipeline | None = None, demo: bool = False) -> FastAPI:
    """The ML-backend routes (/health, /setup, /predict, /webhook) beside the Gradio UI at /. ``demo``: the toy
    models of ``pipeline.testing.demo`` (no weights to download), their example scenes, and a note saying so."""
    examples, note = None, ""
    if demo:
        settings = replace(
            settings,
            pipeline=demo_settings(settings.pipeline),
            segmenter=SHAPES_SEGMENTER,
            box_threshold=SHAPES_BOX_THRESHOLD,
            text_threshold=SHAPES_TEXT_THRESHOLD,
        )
        examples, note = demo_examples(Path(tempfile.gettempdir()) / "groundlabel-demo"), DEMO_NOTE
    models = models or LazyPipeline(settings.pipeline)
    app = FastAPI(title="groundlabel")
    app.include_router(create_router(models, settings))
    # BASIC_AUTH_USER / BASIC_AUTH_PASS guard the UI too: it acts with the environment's Label Studio token.
    ui = build_ui(ModelHub(models, settings.segmenter, note), settings, examples)
    return gr.mount_gradio_app(
        app,
        ui,
        path="/",
        theme=THEME,
        css=CSS,
        head=KEYS_JS + CANVAS_JS,
        auth=settings.basic_auth,
        max_file_size=settings.max_image_bytes,
    )  # uploads cannot fill the disk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python app.py", description=__doc__)
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run on the committed toy models (coloured shapes) with example scenes: no weights, no network",
    )
    args = parser.parse_args(argv)
    quiet_known_warnings()
    try:
        settings = BackendSettings.from_env()
    except GroundlabelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings.configure_logging()
    uvicorn.run(create_app(settings, demo=args.demo), host=settings.host, port=settings.port, log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
