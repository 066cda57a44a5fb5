"""groundlabel's Label Studio side: labeling configs, the REST client, result conversion, pushing, the ML backend.

The public names are resolved on first access (see pipeline/lazy.py): ``import sync.config`` loads no model code.
"""

from pipeline.lazy import export_lazily

# public name -> the submodule that defines it; resolved on first access
__getattr__ = export_lazily(
    __name__,
    {
        "LabelStudioClient": "client",
        "Project": "client",
        "Task": "client",
        "TaskPage": "client",
        "LabelsControl": "config",
        "ProjectConfig": "config",
        "LabelStudioResult": "convert",
        "box_to_percent": "regions",
        "box_to_pixels": "regions",
        "rle_to_mask": "regions",
        "to_label_studio": "convert",
        "REGIONS": "regions",
        "RegionType": "regions",
        "HTTP_STATUS": "errors",
        "AuthError": "errors",
        "ConfigError": "errors",
        "DownloadError": "errors",
        "LabelStudioError": "errors",
        "RequestError": "errors",
        "SyncError": "errors",
        "TrainingDataError": "errors",
        "UnreachableError": "errors",
        "http_status": "errors",
        "Outbox": "push",
        "OutboxItem": "push",
        "Pusher": "push",
        "PushOutcome": "push",
        "BackendSettings": "settings",
        "TaskOutcome": "tasks",
        "predict_tasks": "tasks",
    },
)
