"""groundlabel: one process, one port: the Gradio UI and Label Studio's ML-backend routes on one FastAPI app."""

from __future__ import annotations

import os

import gradio as gr
import uvicorn
from fastapi import FastAPI

from pipeline import LazyPipeline, WeightsError
from sync import BackendSettings
from sync.backend import create_router
from sync.client import max_image_bytes_from_env
from ui.labelstudio import labelstudio_tab
from ui.models import ModelHub
from ui.playground import playground_tab
from ui.theme import CSS, THEME


def build_ui(models: LazyPipeline) -> gr.Blocks:
    """The Gradio UI: model status on top, then the playground and the Label Studio review tabs."""
    hub = ModelHub(models)
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
                labelstudio_tab(hub, model_status)

        def load_models(progress=gr.Progress(track_tqdm=True)) -> str:
            """Load the detector now (downloading it once when online) instead of on the first run."""
            try:
                hub.load(None, progress)
            except WeightsError:
                pass  # the status line shows why and how to fix it
            return hub.status_markdown()

        load.click(load_models, outputs=model_status, concurrency_id="model")
    return demo


def create_app(models: LazyPipeline | None = None) -> FastAPI:
    """The ML-backend routes (/health, /setup, /predict, /webhook) beside the Gradio UI at /."""
    models = models or LazyPipeline()
    settings = BackendSettings.from_env()
    app = FastAPI(title="groundlabel")
    app.include_router(create_router(models, settings))
    # BASIC_AUTH_USER / BASIC_AUTH_PASS guard the UI too: it acts with the environment's Label Studio token.
    return gr.mount_gradio_app(app, build_ui(models), path="/", theme=THEME, css=CSS, auth=settings.basic_auth,
                               max_file_size=max_image_bytes_from_env())  # uploads cannot fill the disk


if __name__ == "__main__":
    host, port = os.environ.get("GROUNDLABEL_HOST", "0.0.0.0"), int(os.environ.get("PORT", 7860))
    uvicorn.run(create_app(), host=host, port=port)
