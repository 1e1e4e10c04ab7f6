"""A local stand-in for the Hugging Face Hub, for tests that push and load datasets.

It implements just enough of the Hub's HTTP API for ``huggingface_hub.HfApi`` to create a repo
and commit files (``create_repo``, ``upload_folder``, ``create_commit``, regular uploads only:
no LFS or Xet), and for ``datasets.load_dataset(repo_id)`` / ``HfFileSystem`` to read them back
(repo info, tree and paths-info listings, file resolution with HEAD and ranged GET). Files are
kept in a temporary folder; there is a single branch and every commit gets a new sha.

    with HubTestServer() as hub, hub_environment(hub.url):
        HfApi(endpoint=hub.url).create_repo("me/data", repo_type="dataset")
        ...

``hub_environment`` points ``huggingface_hub`` and ``datasets`` at the server for the duration
(both read ``HF_ENDPOINT`` and the offline flags once, at import) and lifts offline mode, which
otherwise refuses every request, 127.0.0.1 included.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = ("model", "dataset", "space")
_PREFIXES = {"dataset": "datasets/", "space": "spaces/", "model": ""}


@dataclass
class _Repo:
    repo_id: str
    repo_type: str
    root: Path
    private: bool = False
    sha: str = "0" * 40
    commits: list[str] = field(default_factory=list)

    def files(self) -> list[str]:
        return sorted(
            p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()
        )


def _blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubTestServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) that behaves like a tiny Hub.

    ``requests`` records ``(method, path)`` of every request, and ``unhandled`` those it
    answered 404 for lack of an endpoint, to see what a client needed.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> None:
        #: When set, writes (POST) need ``Authorization: Bearer <token>`` and answer 401
        #: otherwise, as the Hub does for a missing or wrong token.
        self.token = token
        self._tmp = Path(tempfile.mkdtemp(prefix="alambic-hub-"))
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        handler = type("_Handler", (_HubHandler,), {"hub": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        """Serve in a background thread; returns the base URL (use it as ``endpoint``)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=lambda: self._server.serve_forever(poll_interval=0.05),
                name="alambic-hub-server",
                daemon=True,
            )
            self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> HubTestServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- storage ---------------------------------------------------------------------------

    def repo(self, repo_id: str, repo_type: str = "dataset") -> _Repo | None:
        return self._repos.get((repo_type, repo_id))

    def create_repo(self, repo_id: str, repo_type: str, private: bool) -> _Repo | None:
        """The new repo, or ``None`` if it exists."""
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                return None
            root = self._tmp / f"{repo_type}s" / repo_id
            root.mkdir(parents=True)
            repo = _Repo(repo_id, repo_type, root, private)
            self._repos[(repo_type, repo_id)] = repo
            return repo

    def read_file(self, repo_id: str, path: str, repo_type: str = "dataset") -> bytes:
        """A committed file's bytes (for test assertions)."""
        repo = self.repo(repo_id, repo_type)
        if repo is None:
            raise KeyError(f"no {repo_type} repo {repo_id!r}")
        return (repo.root / path).read_bytes()

    def list_files(self, repo_id: str, repo_type: str = "dataset") -> list[str]:
        repo = self.repo(repo_id, repo_type)
        return repo.files() if repo is not None else []

    def commit(self, repo: _Repo, operations: list[dict[str, Any]], summary: str) -> str:
        with self._lock:
            for op in operations:
                key, value = op["key"], op["value"]
                target = (repo.root / value["path"]).resolve()
                if repo.root.resolve() not in target.parents:
                    raise ValueError(f"path {value['path']!r} escapes the repository")
                if key == "file":
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(base64.b64decode(value["content"]))
                elif key == "deletedFile":
                    target.unlink(missing_ok=True)
                elif key == "deletedFolder":
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    raise ValueError(
                        f"the test hub server accepts regular files only, not {key!r} "
                        "(LFS and Xet uploads are not implemented)"
                    )
            digest = hashlib.sha1(
                f"{repo.sha}{summary}{time.time_ns()}{len(repo.commits)}".encode()
            ).hexdigest()
            repo.sha = digest
            repo.commits.append(digest)
            return digest


class _HubHandler(BaseHTTPRequestHandler):
    hub: HubTestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- helpers ---------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers=headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _split(self) -> tuple[list[str], dict[str, list[str]]]:
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        return segments, parse_qs(parts.query)

    def _find_repo(self, repo_type: str, repo_id: str) -> _Repo | None:
        repo = self.hub.repo(repo_id, repo_type)
        if repo is None:
            self._error(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def _not_found(self) -> None:
        self.hub.unhandled.append((self.command, self.path))
        self._error(404, f"test hub server: no endpoint for {self.command} {self.path}")

    # -- routing ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_POST(self) -> None:
        self.hub.requests.append((self.command, self.path))
        token = self.hub.token
        if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
            self._body()
            self._error(401, "Invalid credentials in Authorization header", "Unauthorized")
            return
        segments, _ = self._split()
        body = self._body()
        if segments == ["api", "repos", "create"]:
            self._create_repo(json.loads(body or b"{}"))
        elif segments == ["api", "validate-yaml"]:
            self._json(200, {"errors": [], "warnings": []})
        elif len(segments) >= 6 and segments[0] == "api" and segments[1].rstrip("s") in REPO_TYPES:
            repo_type = segments[1][:-1]
            action = segments[4]
            repo = self._find_repo(repo_type, "/".join(segments[2:4]))
            if repo is None:
                return
            if action == "preupload":
                self._preupload(json.loads(body or b"{}"))
            elif action == "commit":
                self._commit(repo, body)
            elif action == "paths-info":
                self._paths_info(repo, body)
            else:
                self._not_found()
        else:
            self._not_found()

    def _route(self, *, head: bool) -> None:
        self.hub.requests.append((self.command, self.path))
        segments, query = self._split()
        if segments[:1] == ["api"] and len(segments) >= 4 and segments[1].rstrip("s") in REPO_TYPES:
            repo_type = segments[1][:-1]
            repo = self._find_repo(repo_type, "/".join(segments[2:4]))
            if repo is None:
                return
            rest = segments[4:]
            if not rest or rest[0] == "revision":
                self._repo_info(repo, head=head)
            elif rest[0] == "tree":
                path = "/".join(rest[2:])
                self._tree(
                    repo,
                    path,
                    recursive=query.get("recursive", ["false"])[0] in ("1", "true", "True"),
                )
            elif rest[0] == "refs":
                self._json(
                    200,
                    {
                        "branches": [
                            {"name": "main", "ref": "refs/heads/main", "targetCommit": repo.sha}
                        ],
                        "tags": [],
                        "converts": [],
                    },
                )
            else:
                self._not_found()
            return
        # /datasets/<org>/<name>/resolve/<rev>/<path> and /<org>/<name>/resolve/... for models
        if segments and segments[0] in ("datasets", "spaces"):
            repo_type, rest = segments[0][:-1], segments[1:]
        else:
            repo_type, rest = "model", segments
        if len(rest) >= 5 and rest[2] == "resolve":
            repo = self._find_repo(repo_type, "/".join(rest[:2]))
            if repo is None:
                return
            self._resolve(repo, "/".join(rest[4:]), head=head)
            return
        self._not_found()

    # -- endpoints -------------------------------------------------------------------------

    def _create_repo(self, payload: dict[str, Any]) -> None:
        name = payload.get("name")
        organization = payload.get("organization") or "user"
        repo_type = payload.get("type") or "model"
        repo_id = f"{organization}/{name}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        created = self.hub.create_repo(repo_id, repo_type, private)
        if created is None:
            message = f"You already created this {repo_type} repo: {repo_id}"
            self._json(
                409,
                {"error": message, "url": f"{self.hub.url}/{_PREFIXES[repo_type]}{repo_id}"},
                headers={"X-Error-Message": message},
            )
            return
        self._json(200, {"url": f"{self.hub.url}/{_PREFIXES[repo_type]}{repo_id}", "name": repo_id})

    def _preupload(self, payload: dict[str, Any]) -> None:
        files = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
            for f in payload.get("files", [])
        ]
        self._json(200, {"files": files, "commitOid": None})

    def _commit(self, repo: _Repo, body: bytes) -> None:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header: dict[str, Any] = next(
            (item["value"] for item in lines if item["key"] == "header"), {}
        )
        operations = [item for item in lines if item["key"] != "header"]
        try:
            sha = self.hub.commit(repo, operations, header.get("summary", ""))
        except ValueError as exc:
            self._error(400, str(exc))
            return
        url = f"{self.hub.url}/{_PREFIXES[repo.repo_type]}{repo.repo_id}/commit/{sha}"
        self._json(200, {"commitUrl": url, "commitOid": sha, "success": True})

    def _entry(self, repo: _Repo, path: str) -> dict[str, Any] | None:
        target = repo.root / path
        if target.is_file():
            data = target.read_bytes()
            return {"type": "file", "oid": _blob_oid(data), "size": len(data), "path": path}
        if target.is_dir():
            return {
                "type": "directory",
                "oid": hashlib.sha1(path.encode()).hexdigest(),
                "size": 0,
                "path": path,
            }
        return None

    def _repo_info(self, repo: _Repo, *, head: bool) -> None:
        info = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": repo.sha,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "lastModified": "2026-01-01T00:00:00.000Z",
            "createdAt": "2026-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": p} for p in repo.files()],
        }
        body = json.dumps(info).encode()
        self._send(200, body, head=head)

    def _tree(self, repo: _Repo, path: str, *, recursive: bool) -> None:
        base = repo.root / path if path else repo.root
        if not base.is_dir():
            self._error(404, f"Entry not found: {path}", "EntryNotFound")
            return
        children = base.rglob("*") if recursive else base.iterdir()
        entries = []
        for child in sorted(children):
            entry = self._entry(repo, child.relative_to(repo.root).as_posix())
            if entry is not None:
                entries.append(entry)
        self._json(200, entries)

    def _paths_info(self, repo: _Repo, body: bytes) -> None:
        content_type = self.headers.get("Content-Type", "")
        if "json" in content_type:
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        entries = [e for p in paths if (e := self._entry(repo, p.strip("/"))) is not None]
        self._json(200, entries)

    def _resolve(self, repo: _Repo, path: str, *, head: bool) -> None:
        target = repo.root / path
        if not target.is_file():
            self._error(404, f"Entry not found: {path}", "EntryNotFound")
            return
        data = target.read_bytes()
        etag = _blob_oid(data)
        headers = {
            "ETag": f'"{etag}"',
            "X-Repo-Commit": repo.sha,
            "Accept-Ranges": "bytes",
        }
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes="):
            start_text, _, end_text = range_header[len("bytes=") :].partition("-")
            start = int(start_text) if start_text else max(len(data) - int(end_text), 0)
            end = int(end_text) if end_text and start_text else len(data) - 1
            end = min(end, len(data) - 1)
            if start >= len(data):
                self._send(
                    416,
                    b"",
                    headers={"Content-Range": f"bytes */{len(data)}", **headers},
                    head=head,
                )
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(
                206,
                data[start : end + 1],
                content_type="application/octet-stream",
                headers=headers,
                head=head,
            )
            return
        self._send(200, data, content_type="application/octet-stream", headers=headers, head=head)


@contextlib.contextmanager
def hub_environment(url: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Point ``huggingface_hub`` and ``datasets`` at ``url`` and lift offline mode, then restore.

    ``cache_dir`` (a temporary folder) keeps downloads out of the user's Hugging Face cache.
    """
    import huggingface_hub.constants as hub_constants

    saved_env = {
        key: os.environ.get(key)
        for key in (
            "HF_ENDPOINT",
            "HF_HUB_OFFLINE",
            "HF_DATASETS_OFFLINE",
            "TRANSFORMERS_OFFLINE",
            "HF_HUB_DISABLE_TELEMETRY",
            "HF_HUB_CACHE",
        )
    }
    patches: list[tuple[Any, str, Any]] = [
        (hub_constants, "ENDPOINT", url),
        (
            hub_constants,
            "HUGGINGFACE_CO_URL_TEMPLATE",
            url + "/{repo_id}/resolve/{revision}/{filename}",
        ),
        (hub_constants, "HF_HUB_OFFLINE", False),
        (hub_constants, "HF_HUB_DISABLE_TELEMETRY", True),
    ]
    if cache_dir is not None:
        patches.append((hub_constants, "HF_HUB_CACHE", str(cache_dir)))
    try:
        import datasets.config as ds_config
    except ImportError:
        ds_config = None
    if ds_config is not None:
        patches += [
            (ds_config, "HF_ENDPOINT", url),
            (ds_config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}"),
            (ds_config, "HUB_DATASETS_HFFS_URL", "hf://datasets/{repo_id}@{revision}/{path}"),
            (ds_config, "HF_HUB_OFFLINE", False),
            (ds_config, "HF_DATASETS_OFFLINE", False),
        ]
    saved = [(obj, name, getattr(obj, name, None), hasattr(obj, name)) for obj, name, _ in patches]
    try:
        os.environ["HF_ENDPOINT"] = url
        os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
        for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.pop(key, None)
        if cache_dir is not None:
            os.environ["HF_HUB_CACHE"] = str(cache_dir)
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value, existed in saved:
            if existed:
                setattr(obj, name, value)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


__all__ = ["HubTestServer", "hub_environment"]
