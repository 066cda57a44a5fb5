"""groundlabel: one process, one port: the Gradio UI and Label Studio's ML-backend routes on one FastAPI app."""

from __future__ import annotations

import sys

import gradio as gr
import uvicorn
from fastapi import FastAPI

from pipeline import GroundlabelError, LazyPipeline
from sync import BackendSettings
from sync.backend import create_router
from ui.labelstudio import labelstudio_tab
from ui.models import ModelHub, load_models
from ui.playground import playground_tab
from ui.theme import CSS, THEME


def build_ui(hub: ModelHub, settings: BackendSettings) -> gr.Blocks:
    """The Gradio UI: model status on top, then the playground and the Label Studio review tabs."""
    with gr.Blocks(title="groundlabel") as demo:
        with gr.Row(elem_id="gl-header", equal_height=True):
            gr.Markdown("## groundlabel\nType what you look for, review the boxes, push them to Label Studio.",
                        elem_id="gl-title")
            with gr.Column(scale=2, elem_id="gl-status-box"):
                model_status = gr.Markdown(hub.status_markdown, elem_id="model-status")
            load = gr.Button("Load models", size="sm", scale=0, min_width=120, elem_id="load-models")
        with gr.Tabs():
            with gr.Tab("Playground", id="playground", elem_id="tab-playground"):
                playground_tab(hub, model_status)
            with gr.Tab("Label Studio", id="labelstudio", elem_id="tab-labelstudio"):
                labelstudio_tab(hub, model_status, settings)
        load.click(load_models(hub), outputs=model_status, concurrency_id="model")
    return demo


def create_app(settings: BackendSettings, models: LazyPipeline | None = None) -> FastAPI:
    """The ML-backend routes (/health, /setup, /predict, /webhook) beside the Gradio UI at /."""
    models = models or LazyPipeline(settings.pipeline)
    app = FastAPI(title="groundlabel")
    app.include_router(create_router(models, settings))
    # BASIC_AUTH_USER / BASIC_AUTH_PASS guard the UI too: it acts with the environment's Label Studio token.
    ui = build_ui(ModelHub(models, settings.segmenter), settings)
    return gr.mount_gradio_app(app, ui, path="/", theme=THEME, css=CSS, auth=settings.basic_auth,
                               max_file_size=settings.max_image_bytes)  # uploads cannot fill the disk


def main() -> int:
    try:
        settings = BackendSettings.from_env()
    except GroundlabelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings.configure_logging()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
