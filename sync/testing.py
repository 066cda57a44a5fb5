"""A real Label Studio server on 127.0.0.1, started and filled from Python: for the tests' fixtures, benchmarks and
scripts that need one (``with running_label_studio(environment) as server: ...``, passing the caller's environment).

The server is started with the settings groundlabel's README gives Label Studio, an admin with a legacy token, and
local-files serving under ``files_root``. The first start migrates a template data dir (~20 s) under
``cache_root``; later starts copy it (~3 s). Stopped by PID. ``serve(app)`` runs any ASGI app (the ML backend, the
Gradio UI) on 127.0.0.1 in a thread.

``start_process`` / ``stop_process`` start a helper process (the server, a CLI under test) that cannot outlive its
caller: its own process group, stopped as a group, SIGTERM from the kernel when the caller dies, even by SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import httpx

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "groundlabel-test-pw"
LEGACY_TOKEN = "0123456789abcdef0123456789abcdef01234567"
# A fixed signing key, so personal access tokens (JWTs) stay valid across a restart of the server.
SECRET_KEY = "groundlabel-tests-not-secret-0123456789"
# Generic names label-studio also reads; a value left over in the environment would change how it starts.
_GENERIC_ENV = ("HOST", "PORT", "USERNAME", "PASSWORD", "USER_TOKEN", "DEBUG", "LOG_LEVEL", "CI")

# The Label Studio settings README.md tells users to set for a backend on a local address (and for a legacy token);
# tests/test_sync_backend.py checks the README still says each of them.
README_SETTINGS = {
    "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false",
    "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
}

GROUNDING_DINO_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Style>
    .lsf-main-content.lsf-requesting .prompt::before { content: ' loading...'; color: #808080; }
  </Style>
  <View className="prompt">
  <TextArea name="prompt" toName="image" editable="true" rows="2" maxSubmissions="1" showSubmitButton="true"/>
  </View>
  <RectangleLabels name="label" toName="image">
    <Label value="cats" background="yellow"/>
    <Label value="house" background="blue"/>
  </RectangleLabels>
  <BrushLabels name="label2" toName="image">
    <Label value="cats" background="yellow"/>
    <Label value="house" background="blue"/>
  </BrushLabels>
</View>"""

# The README's config for text prompts and Label Studio's smart tools in one labeling screen (the README shows it
# verbatim): type a prompt for boxes and masks of every match, click (Alt-click: negative) or drag a smart box to
# get one object's mask.
SMART_TOOLS_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <Header value="Prompt: what to find (one submission per task)"/>
  <TextArea name="prompt" toName="image" editable="true" rows="2" maxSubmissions="1" showSubmitButton="true"/>
  <Header value="Boxes (the prompt's answers)"/>
  <RectangleLabels name="label" toName="image" smart="false">   <!-- text-prompt boxes land here -->
    <Label value="cats"/><Label value="house"/>
  </RectangleLabels>
  <Header value="Masks (the prompt's and the smart tools' answers)"/>
  <BrushLabels name="mask" toName="image" smart="false">        <!-- text-prompt and smart-tool masks land here -->
    <Label value="cats"/><Label value="house"/>
  </BrushLabels>
  <Header value="Smart click: pick a label, then Auto-Detect's key point"/>
  <KeyPointLabels name="click" toName="image" smartOnly="true">
    <Label value="cats"/><Label value="house"/>
  </KeyPointLabels>
  <Header value="Smart box: pick a label, then Auto-Detect's rectangle"/>
  <RectangleLabels name="smartbox" toName="image" smartOnly="true">
    <Label value="cats"/><Label value="house"/>
  </RectangleLabels>
</View>"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_PR_SET_PDEATHSIG = 1
_STARTED: set[subprocess.Popen] = set()  # running children of this process, killed at exit if still there


def _die_with_parent() -> None:
    """Run in the child before exec: SIGTERM when the parent dies (Linux; elsewhere the atexit below remains)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_process(args: list[str], **popen: object) -> subprocess.Popen:
    """``subprocess.Popen(args, **popen)`` in its own session and process group, so a Ctrl-C or SIGTERM meant for
    the caller is the caller's to handle, and the child dies with the caller. Stop it with ``stop_process``."""
    process = subprocess.Popen(args, start_new_session=True, preexec_fn=_die_with_parent, **popen)
    _STARTED.add(process)
    return process


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the process group of a ``start_process`` child, SIGKILL it after ``timeout`` s; a second Ctrl-C
    while waiting kills at once (nothing is left behind either way)."""
    try:
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
    finally:
        _signal_group(process, signal.SIGKILL)  # what the leader left in its group, or the leader itself
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
        _STARTED.discard(process)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_STARTED):
        _signal_group(process, signal.SIGKILL)


def label_studio_bin() -> str:
    return str(Path(sys.executable).with_name("label-studio"))


@dataclass
class LabelStudioServer:
    """A label-studio process: its URL, token, data dir and local-files document root."""

    data_dir: Path
    files_root: Path
    base_env: Mapping[str, str] = field(default_factory=dict, repr=False)  # the caller's environment, passed on
    port: int = field(default_factory=free_port)
    token: str = LEGACY_TOKEN
    database: Mapping[str, str] = field(default_factory=lambda: {"DJANGO_DB": "sqlite"})  # or PostgreSQL's settings
    process: subprocess.Popen | None = None
    _personal_token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.with_suffix(".log")

    def env(self) -> dict[str, str]:
        """The server's environment: the README's settings for an ML backend on a local address, and what a test
        server needs (its admin, a legacy token, local-files serving, no telemetry); nothing that loosens more."""
        env = {k: v for k, v in self.base_env.items() if k not in _GENERIC_ENV}
        env.update(README_SETTINGS)
        env.update(
            LABEL_STUDIO_BASE_DATA_DIR=str(self.data_dir),
            SECRET_KEY=SECRET_KEY,
            LABEL_STUDIO_USERNAME=ADMIN_EMAIL,
            LABEL_STUDIO_PASSWORD=ADMIN_PASSWORD,
            LABEL_STUDIO_USER_TOKEN=self.token,
            LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
            LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(self.files_root),
            SENTRY_DSN="",
            FRONTEND_SENTRY_DSN="",
            LABEL_STUDIO_COLLECT_ANALYTICS="false",
            LABEL_STUDIO_LATEST_VERSION_CHECK="false",
        )
        env.update(self.database)
        return env

    def start(self, timeout: float = 120.0) -> None:
        """Start the server and wait until /health is UP and the token works."""
        assert self.process is None, "already running"
        self.files_root.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = start_process(
            [
                label_studio_bin(),
                "start",
                "--no-browser",
                "--internal-host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--host",
                self.url,
            ],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        try:
            self._wait_up(timeout)
        except BaseException:  # not up, or interrupted while waiting: leave no server behind
            self.stop()
            raise

    def _wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"label-studio exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).json().get("status") == "UP":
                    whoami = httpx.get(f"{self.url}/api/current-user/whoami", headers=self.headers(), timeout=5)
                    whoami.raise_for_status()
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"label-studio was not up on {self.url} after {timeout:g} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the process group we started (SIGTERM, then SIGKILL after 15 s)."""
        if self.process is None:
            return
        stop_process(self.process, timeout=15)
        self.process = None

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Stop the server for the block, then start it again on the same port with the same data."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- filling the server -------------------------------------------------------------------------------------

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Token {token or self.token}"}

    def api(self, method: str, path: str, **kwargs):
        response = httpx.request(method, f"{self.url}{path}", headers=self.headers(), timeout=60, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def create_project(self, label_config: str = GROUNDING_DINO_CONFIG, title: str = "groundlabel test") -> int:
        return self.api("POST", "/api/projects", json={"title": title, "label_config": label_config})["id"]

    def import_tasks(self, project: int, data: list[dict]) -> list[int]:
        """Tasks with the given data dicts; their ids in order."""
        reply = self.api(
            "POST",
            f"/api/projects/{project}/import",
            params={"return_task_ids": "true"},
            json=[{"data": item} for item in data],
        )
        return reply["task_ids"]

    def upload_images(self, project: int, files: dict[str, bytes]) -> list[int]:
        """Upload image files (name -> bytes) like the import dialog does: tasks with /data/upload/... URLs."""
        ids = []
        for name, content in files.items():  # one request per file keeps the id order known
            reply = self.api(
                "POST",
                f"/api/projects/{project}/import",
                params={"return_task_ids": "true"},
                files={"file": (name, io.BytesIO(content))},
            )
            ids += reply["task_ids"]
        return ids

    def import_local_files(self, project: int, files: dict[str, bytes], folder: str = "images") -> list[int]:
        """Write files under the document root, add a local storage covering them, and create tasks with
        /data/local-files/?d=<folder>/<name> URLs."""
        directory = self.files_root / folder
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (directory / name).write_bytes(content)
        self.api(
            "POST",
            "/api/storages/localfiles",
            json={"project": project, "path": str(directory), "title": folder, "use_blob_urls": True},
        )
        return self.import_tasks(project, [{"image": f"/data/local-files/?d={folder}/{name}"} for name in files])

    def personal_access_token(self) -> str:
        """The admin's personal access token (a JWT refresh token), created once per server."""
        if self._personal_token is None:
            self._personal_token = self.api("POST", "/api/token/")["token"]
        return self._personal_token

    def register_ml_backend(
        self, project: int, url: str, title: str = "groundlabel", basic_auth: tuple[str, str] | None = None
    ) -> int:
        """Connect an ML backend (interactive) to a project, as the Model settings page does; its id."""
        body = {"url": url, "project": project, "title": title, "is_interactive": True}
        if basic_auth:
            body.update(auth_method="BASIC_AUTH", basic_auth_user=basic_auth[0], basic_auth_pass=basic_auth[1])
        return self.api("POST", "/api/ml", json=body)["id"]


def _template_dir(root: Path, base_env: Mapping[str, str]) -> Path:
    """A migrated, empty data dir for this label-studio version under ``root``, built once per machine."""
    template = root / f"label-studio-{version('label-studio')}"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions: one builds, the others wait and copy
        if not (template / "label_studio.sqlite3").is_file():
            building = root / f"building-{os.getpid()}"
            shutil.rmtree(building, ignore_errors=True)
            server = LabelStudioServer(building / "data", building / "files", base_env)
            try:
                server.start(timeout=300)
            finally:
                server.stop()
            shutil.rmtree(template, ignore_errors=True)
            os.replace(building / "data", template)
            shutil.rmtree(building, ignore_errors=True)
    return template


@contextlib.contextmanager
def running_label_studio(
    base_env: Mapping[str, str], base: Path | None = None, cache_root: Path | None = None
) -> Iterator[LabelStudioServer]:
    """A fresh Label Studio (a copy of the migrated template) under ``base`` (a new temp dir by default), stopped
    on exit. ``base_env``: the environment the server process starts from (generic names it misreads removed);
    ``cache_root``: where the migrated template is kept (default ~/.cache/groundlabel/tests)."""
    cache_root = cache_root or Path.home() / ".cache" / "groundlabel" / "tests"
    with contextlib.ExitStack() as stack:
        if base is None:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="groundlabel-ls-")))
        shutil.copytree(_template_dir(cache_root, base_env), base / "data")
        server = LabelStudioServer(base / "data", base / "files", base_env)
        server.start()
        stack.callback(server.stop)
        yield server


@contextlib.contextmanager
def serve(app, port: int | None = None) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a background thread; yields its URL, stops it on exit."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port or free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
