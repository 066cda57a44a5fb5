"""Hostile input for reliability tests: broken images, prompts that must be refused, a second web server, and a
proxy that loses Label Studio's answers.

``WebHost`` stands for the hosts a task's image URL may point at (a CDN, a bucket, an attacker's server): it serves
fixed answers per path and records every request, so tests can serve broken or slow images and prove what
groundlabel sends to hosts that are not Label Studio. ``CuttingProxy`` sits in front of the real Label Studio and
drops the answer to a chosen request after Label Studio handled it: the fault that makes a naive retry duplicate.
"""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from tests.labelstudio import free_port, png

# The default of GROUNDLABEL_MAX_PIXELS, as users read it in error messages.
PIXEL_LIMIT = "40,000,000"


def blank_png(width: int, height: int) -> bytes:
    """A black 1-bit PNG of any size in a few kilobytes (rows of zeros compress to almost nothing): a
    decompression bomb when large, made without ever holding its pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def truncated_jpeg() -> bytes:
    """The first half of a JPEG: its header reads fine, its pixels end early."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png(64, 48))).save(buffer, "JPEG")
    return buffer.getvalue()[: buffer.tell() // 2]


def broken_images() -> dict[str, tuple[bytes, str]]:
    """Image bytes every entry point must refuse, with the words its error message has to contain."""
    return {
        "0-byte": (b"", "empty (0 bytes)"),
        "html page": (b"<html><body>Not Found</body></html>", "not a readable image"),
        "truncated JPEG": (truncated_jpeg(), "truncated or corrupt"),
        "100 MP bomb": (blank_png(10_000, 10_000), f"over the limit of {PIXEL_LIMIT}"),
        "20k x 20k PNG": (blank_png(20_000, 20_000), f"over the limit of {PIXEL_LIMIT}"),
    }


def prompt_of_tokens(count: int, label: str = "cats") -> str:
    """A one-phrase prompt that is exactly ``count`` tokens for Grounding DINO ([CLS] words . [SEP]), labeled
    ``label``; "cats" is one token in BERT's vocabulary and in the test vocabulary."""
    return " ".join(["cats"] * (count - 3)) + f":{label}"


# Prompts with nothing to look for: answered like an empty prompt, never run, never remembered.
EMPTY_PROMPTS = {"empty": "", "whitespace": " \t\n ", "invisible": "\u200b\u2060\ufeff", "separators": " . , ; "}
# Prompts in other scripts, with an explicit label so their boxes land on a project label.
UNICODE_PROMPTS = ["猫:cats. 家:house", "café crème:cats", "🐱 кошка:cats", "قطة:cats", "ｃａｔｓ:cats"]


@dataclass(frozen=True)
class Answer:
    """What the host sends for one path: ``delay`` seconds of silence first, then status, headers and body
    (``drip``: the body one byte per ``drip`` seconds, for a server that never quite finishes;
    ``declare_length=False``: no Content-Length, the body ends when the connection closes)."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0
    declare_length: bool = True


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]


class WebHost:
    """``routes`` maps a path (query left out) to an ``Answer``; other paths get 404. ``requests`` lists what came in,
    queries included."""

    def __init__(self, routes: dict[str, Answer] | None = None):
        self.routes: dict[str, Answer] = dict(routes or {})
        self.requests: list[Request] = []
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __call__(self, path: str) -> str:
        """The absolute URL of ``path`` on this host."""
        return self.url + path

    def handler(self) -> type[BaseHTTPRequestHandler]:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's name)
                host.requests.append(Request("GET", self.path, dict(self.headers)))
                answer = host.routes.get(self.path.split("?")[0], Answer(b"not found", status=404))
                time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    if answer.declare_length:
                        self.send_header("Content-Length", str(len(answer.body)))
                    else:
                        self.close_connection = True
                        self.send_header("Connection", "close")
                    self.end_headers()
                    if not answer.drip:
                        self.wfile.write(answer.body)
                        return
                    for byte in answer.body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(answer.drip)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up first
                    pass

            def log_message(self, *args):
                pass

        return Handler


@contextlib.contextmanager
def web_host(routes: dict[str, Answer] | None = None) -> Iterator[WebHost]:
    """A ``WebHost`` serving on 127.0.0.1 in a thread for the block."""
    host = WebHost(routes)
    server = ThreadingHTTPServer(("127.0.0.1", host.port), host.handler())
    server.daemon_threads = True

    def stop() -> None:
        server.shutdown()
        server.server_close()

    with _serving(server.serve_forever, stop):
        yield host


@contextlib.contextmanager
def _serving(serve: Callable[[], None], stop: Callable[[], None]) -> Iterator[None]:
    """``serve`` in a daemon thread for the block; ``stop`` makes it return."""
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop()
        thread.join(timeout=10)


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of a server that can lose answers: ``cut(b"POST /api/predictions")`` lets
    the next request that starts so reach the server, waits for the server's answer, and then drops the
    connection without passing the answer on, like a server that dies right after it wrote. ``cuts`` counts them."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.cuts = 0
        self._pending: list[bytes] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self, request_start: bytes) -> None:
        with self._lock:
            self._pending.append(request_start)

    def serve(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in serve(); close() alone does not
        self._listener.close()

    def _take(self, data: bytes) -> bool:
        with self._lock:
            for start in self._pending:
                if data.startswith(start):
                    self._pending.remove(start)
                    return True
        return False

    def _connection(self, client: socket.socket) -> None:
        cutting = threading.Event()
        with client, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:

            def answers() -> None:
                while data := _recv(upstream):
                    if cutting.is_set():
                        self.cuts += 1
                        client.shutdown(socket.SHUT_RDWR)
                        return
                    client.sendall(data)
                client.shutdown(socket.SHUT_RDWR)

            reader = threading.Thread(target=answers, daemon=True)
            reader.start()
            while data := _recv(client):
                if self._take(data):
                    cutting.set()
                upstream.sendall(data)
            reader.join(timeout=60)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 16)
    except OSError:
        return b""


@contextlib.contextmanager
def cutting_proxy(upstream_port: int) -> Iterator[CuttingProxy]:
    """A ``CuttingProxy`` to ``upstream_port`` on 127.0.0.1 for the block."""
    proxy = CuttingProxy(upstream_port)
    with _serving(proxy.serve, proxy.close):
        yield proxy
