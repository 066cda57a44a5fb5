"""groundlabel: one process, one port: the Gradio UI and Label Studio's ML-backend routes on one FastAPI app."""

from __future__ import annotations

import os

import gradio as gr
import uvicorn
from fastapi import FastAPI

from pipeline import LazyPipeline
from sync.backend import create_router


def build_ui(models: LazyPipeline) -> gr.Blocks:
    """The Gradio UI (playground + Label Studio review)."""
    raise NotImplementedError("issue 4")


def create_app(models: LazyPipeline | None = None) -> FastAPI:
    """The ML-backend routes (/health, /setup, /predict, /webhook) beside the Gradio UI at /."""
    models = models or LazyPipeline()
    app = FastAPI(title="groundlabel")
    app.include_router(create_router(models))
    return gr.mount_gradio_app(app, build_ui(models), path="/")


if __name__ == "__main__":
    uvicorn.run(create_app(), host=os.environ.get("GROUNDLABEL_HOST", "0.0.0.0"), port=int(os.environ.get("PORT", 7860)))
