"""groundlabel's Label Studio side: labeling configs, the REST client, result conversion, pushing, the ML backend."""

from .client import LabelStudioClient, Project, Task, TaskPage
from .config import LabelsControl, ProjectConfig
from .convert import LabelStudioResult, to_label_studio
from .errors import (
    HTTP_STATUS,
    AuthError,
    ConfigError,
    DownloadError,
    LabelStudioError,
    RequestError,
    SyncError,
    UnreachableError,
    http_status,
)
from .push import Outbox, OutboxItem, Pusher, PushOutcome
from .regions import REGIONS, RegionType, box_to_percent, box_to_pixels, rle_to_mask
from .settings import BackendSettings
from .tasks import TaskOutcome, predict_tasks

__all__ = [
    "HTTP_STATUS",
    "REGIONS",
    "RegionType",
    "RequestError",
    "TaskOutcome",
    "http_status",
    "predict_tasks",
    "AuthError",
    "BackendSettings",
    "ConfigError",
    "DownloadError",
    "LabelStudioClient",
    "LabelStudioError",
    "LabelStudioResult",
    "LabelsControl",
    "Outbox",
    "OutboxItem",
    "Project",
    "ProjectConfig",
    "PushOutcome",
    "Pusher",
    "SyncError",
    "Task",
    "TaskPage",
    "UnreachableError",
    "box_to_percent",
    "box_to_pixels",
    "rle_to_mask",
    "to_label_studio",
]
