"""Local HTTP servers on 127.0.0.1 for the download tests: a misbehaving file server and a fake Hub."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

#: What the file server does for a path (set ``server.modes[path]``).
MODES = (
    "ok",  # 200, or 206 for a Range request
    "corrupt",  # right length, wrong bytes
    "truncate",  # declares the full length, sends bytes up to ``cut`` only, then closes
    "drop_once",  # like truncate on the first request, then ok
    "ignore_range",  # always 200 with the whole body
    "500_once",  # HTTP 500 on the first request, then ok
    "404",
    "html",  # 200 text/html error page
    "html_sniff",  # an HTML page served as application/octet-stream
    "annex",  # a git-annex pointer served as the file
)


class FileServer(ThreadingHTTPServer):
    """Serves ``files`` (path -> bytes), with per-path misbehaviour and a request log."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FileHandler)
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}
        self.cut: dict[str, int] = {}
        #: one (path, Range header or None) per GET, in arrival order
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def add(self, path: str, data: bytes, mode: str = "ok", cut: int | None = None) -> str:
        """Serve ``data`` at ``/path``; return its md5."""
        assert mode in MODES
        self.files[path] = data
        self.modes[path] = mode
        self.cut[path] = len(data) // 2 if cut is None else cut
        return hashlib.md5(data).hexdigest()

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


class _FileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FileServer

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str = "text/plain", **headers) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        srv = self.server
        path = unquote(urlsplit(self.path).path).lstrip("/")
        range_header = self.headers.get("Range")
        with srv.lock:
            nth = srv.count(path)
            srv.requests.append((path, range_header))
        mode = srv.modes.get(path, "404")
        if path not in srv.files or mode == "404":
            self._send(404, b"Not Found")
            return
        body = srv.files[path]
        if mode == "corrupt":
            body = bytes(b ^ 0xFF for b in body)
        elif mode == "html":
            page = b"<!DOCTYPE html><html><body>Access Denied</body></html>"
            self._send(200, page, "text/html; charset=utf-8")
            return
        elif mode == "html_sniff":
            self._send(200, b"\n<html><body>Service error</body></html>", "binary/octet-stream")
            return
        elif mode == "annex":
            pointer = b"/annex/objects/MD5E-s230399888--e7ecedfcc2e378f760447a49fc3940dd.hf5\n"
            self._send(200, pointer, "binary/octet-stream")
            return
        elif mode == "500_once" and nth == 0:
            self._send(500, b"Internal Server Error")
            return
        start = 0
        if range_header and mode != "ignore_range":
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self._send(416, b"", Content_Range=f"bytes */{len(body)}")
                return
        payload = body[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "binary/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        if mode == "truncate" or (mode == "drop_once" and nth == 0):
            # send up to the cut, then hang up: the client sees fewer bytes than Content-Length
            self.wfile.write(body[start : max(start, srv.cut[path])])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


class FakeHub(ThreadingHTTPServer):
    """The few Hugging Face Hub routes that ``huggingface_hub.snapshot_download`` uses.

    ``GET /api/models/{repo}/revision/{rev}`` (model info with ``sha``),
    ``GET /api/models/{repo}/tree/{sha}`` (file listing) and ``HEAD``/``GET
    /{repo}/resolve/{sha}/{file}`` (with ``X-Repo-Commit``, ``ETag``, ``Content-Length``).
    Repositories in ``gated`` answer 401 with ``X-Error-Code: GatedRepo``.
    """

    daemon_threads = True

    def __init__(self, repo_id: str, sha: str, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.repo_id = repo_id
        self.sha = sha
        self.hub_files = files
        self.gated: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeHub

    def log_message(self, format, *args):
        pass

    def _reply(self, status: int, body: bytes, head: bool = False, **headers: str) -> None:
        self.send_response(status)
        headers.setdefault("Content-Type", "application/json")
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _route(self, head: bool) -> None:
        hub = self.server
        path = unquote(urlsplit(self.path).path)
        with hub.lock:
            hub.requests.append(("HEAD" if head else "GET", path))
        repo = hub.repo_id
        for gated in hub.gated:
            if path.startswith((f"/api/models/{gated}/", f"/{gated}/")):
                body = json.dumps({"error": "Access to this model is restricted."}).encode()
                self._reply(401, body, head, X_Error_Code="GatedRepo")
                return
        not_found = json.dumps({"error": "Repository not found"}).encode()
        if path.startswith(f"/api/models/{repo}/revision/"):
            info = {
                "id": repo,
                "sha": hub.sha,
                "siblings": [{"rfilename": name} for name in sorted(hub.hub_files)],
            }
            self._reply(200, json.dumps(info).encode(), head)
        elif path.startswith(f"/api/models/{repo}/tree/{hub.sha}"):
            tree = [
                {
                    "type": "file",
                    "path": name,
                    "size": len(data),
                    "oid": hashlib.sha1(data).hexdigest(),
                }
                for name, data in sorted(hub.hub_files.items())
            ]
            self._reply(200, json.dumps(tree).encode(), head)
        elif path.startswith(f"/{repo}/resolve/{hub.sha}/"):
            name = path.removeprefix(f"/{repo}/resolve/{hub.sha}/")
            if name not in hub.hub_files:
                self._reply(404, b"{}", head, X_Error_Code="EntryNotFound", X_Repo_Commit=hub.sha)
                return
            data = hub.hub_files[name]
            self._reply(
                200,
                data,
                head,
                Content_Type="application/octet-stream",
                X_Repo_Commit=hub.sha,
                ETag=f'"{hashlib.sha1(data).hexdigest()}"',
            )
        else:
            self._reply(404, not_found, head, X_Error_Code="RepoNotFound")

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    """Run ``server`` in a thread for the duration of the block."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
