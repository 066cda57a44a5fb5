"""groundlabel's Label Studio side: labeling configs, the REST client, result conversion, pushing, the ML backend."""

from .client import LabelStudioClient, Project, Task, TaskPage
from .config import LabelsControl, ProjectConfig
from .convert import LabelStudioResult, box_to_percent, box_to_pixels, rle_to_mask, to_label_studio
from .errors import AuthError, ConfigError, DownloadError, LabelStudioError, SyncError, UnreachableError
from .push import Outbox, OutboxItem, PushOutcome, Pusher
from .settings import BackendSettings

__all__ = [
    "AuthError", "BackendSettings", "ConfigError", "DownloadError", "LabelStudioClient", "LabelStudioError",
    "LabelStudioResult", "LabelsControl", "Outbox", "OutboxItem", "Project", "ProjectConfig", "PushOutcome", "Pusher",
    "SyncError", "Task", "TaskPage", "UnreachableError", "box_to_percent", "box_to_pixels", "rle_to_mask",
    "to_label_studio",
]
