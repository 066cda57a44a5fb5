"""The Gradio UI's parts (app.py assembles them): playground, Label Studio review, model status, shared helpers."""
