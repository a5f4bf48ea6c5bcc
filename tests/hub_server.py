"""A small fake Hugging Face Hub on localhost, for testing uploads and downloads without the network.

It speaks the part of the Hub HTTP API that ``huggingface_hub`` (2.x) and ``datasets`` use to push a dataset
and load it back, with the routes and payloads taken from the client code:

=====================================================  ===========================================
``GET  /api/whoami-v2``                                 who the token belongs to
``POST /api/validate-yaml``                             README metadata check before a commit
``POST /api/repos/create``                              create a repo (payload recorded: visibility)
``GET  /api/{type}s/{ns}/{name}[/revision/{rev}]``      repo info (sha, siblings, private)
``POST /api/{type}s/{ns}/{name}/branch/{branch}``       create a branch
``POST /api/{type}s/{ns}/{name}/preupload/{rev}``       upload mode per file (lfs / regular)
``POST /{prefix}{ns}/{name}.git/info/lfs/objects/batch``  LFS batch: where to PUT each object
``PUT  /__lfs/{sha256}``                                LFS object upload (on this same server)
``POST /api/{type}s/{ns}/{name}/commit/{rev}``          NDJSON commit (file, lfsFile, deletedFile...)
``GET  /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]``   tree listing (``recursive``)
``POST /api/{type}s/{ns}/{name}/paths-info/{rev}``      info about given paths
``GET|HEAD /{prefix}{ns}/{name}/resolve/{rev}/{path}``  file content (ETag, X-Repo-Commit, Range)
=====================================================  ===========================================

Xet is never advertised: clients must run with ``HF_HUB_DISABLE_XET=1`` (hf_xet would otherwise talk to a
CAS server). Every commit is a full snapshot; blobs are stored content-addressed under ``root/blobs`` and
every branch head is materialised as plain files under ``root/{type}s/{ns}/{name}/{branch}/`` so a test can
look at what was received.

Failure modes (``server.mode``): ``"ok"``, ``"401"``, ``"403"``, ``"429"``, ``"500"`` (every request answers
that status), ``"drop_upload"`` (the connection is closed half-way through each LFS object upload).

Usage::

    with HubServer(tmp_path / "hub", token="hf_test") as hub:
        env = hub.client_env(tmp_path / "home")       # HF_ENDPOINT, HF_TOKEN, HF_HUB_DISABLE_XET, ...
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.arrow filter=lfs diff=lfs merge=lfs -text\n"
LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".png", ".jpg", ".jpeg", ".zip", ".tar", ".gz")
_PREFIX = {"dataset": "datasets/", "space": "spaces/", "model": ""}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubError(Exception):
    def __init__(self, status: int, message: str, code: Optional[str] = None, extra: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra or {}


class Repo:
    def __init__(self, repo_type: str, repo_id: str, private: bool):
        self.repo_type, self.repo_id, self.private = repo_type, repo_id, private
        self.commits: dict[str, dict[str, Any]] = {}
        self.branches: dict[str, str] = {}

    def head(self, rev: str) -> str:
        """Commit oid for a branch name or a commit oid."""
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.commits:
            return rev
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def files(self, rev: str) -> dict[str, dict[str, Any]]:
        return self.commits[self.head(rev)]["files"]


class HubServer:
    """Threaded fake Hub. ``with HubServer(root) as hub: hub.endpoint`` -> ``http://127.0.0.1:PORT``."""

    def __init__(self, root: str | os.PathLike, token: Optional[str] = "hf_test_token", user: str = "tester"):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "blobs").mkdir(exist_ok=True)
        self.token, self.user = token, user
        self.mode = "ok"
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request received
        self.create_payloads: list[dict] = []  # bodies of POST /api/repos/create
        self.commit_payloads: list[list[dict]] = []  # parsed NDJSON of every commit
        self.lock = threading.RLock()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> "HubServer":
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self, home: str | os.PathLike, token: Optional[str] = "default") -> dict[str, str]:
        """Environment for a client subprocess: online, pointed here, no Xet, caches under ``home``."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HF_", "HUGGINGFACE_")) and k not in ("TRANSFORMERS_OFFLINE",)}
        home = Path(home)
        env.update({
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(home),
            "HF_DATASETS_CACHE": str(home / "datasets"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "TQDM_DISABLE": "1",
            "NO_PROXY": "*",
        })
        token = self.token if token == "default" else token
        if token:
            env["HF_TOKEN"] = token
        return env

    # -- direct access for tests -----------------------------------------------------------------------------
    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def read_file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "dataset") -> bytes:
        with self.lock:
            entry = self.repo(repo_id, repo_type).files(revision)[path]
        return (self.root / "blobs" / entry["sha256"]).read_bytes()

    def list_files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> list[str]:
        with self.lock:
            return sorted(self.repo(repo_id, repo_type).files(revision))

    def put_file(self, repo_id: str, path: str, data: bytes, revision: str = "main",
                 repo_type: str = "dataset", message: str = "edit on the Hub") -> str:
        """Commit one file as if a user edited it in the web UI; returns the commit oid."""
        with self.lock:
            repo = self.repo(repo_id, repo_type)
            files = dict(repo.files(revision))
            files[path] = self._store_blob(data, lfs=path.endswith(LFS_SUFFIXES))
            return self._commit(repo, revision, files, message)

    # -- storage ---------------------------------------------------------------------------------------------
    def _store_blob(self, data: bytes, lfs: bool) -> dict[str, Any]:
        sha = hashlib.sha256(data).hexdigest()
        blob = self.root / "blobs" / sha
        if not blob.exists():
            tmp = blob.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, blob)
        return {"sha256": sha, "size": len(data), "lfs": lfs, "git_oid": _git_blob_sha1(data)}

    def _commit(self, repo: Repo, branch: str, files: dict, title: str, parent: Optional[str] = None) -> str:
        oid = hashlib.sha1(f"{repo.repo_id}{branch}{uuid.uuid4()}".encode()).hexdigest()
        repo.commits[oid] = {"files": files, "parent": parent if parent else repo.branches.get(branch),
                             "title": title, "date": _now()}
        repo.branches[branch] = oid
        self._materialise(repo, branch)
        return oid

    def _materialise(self, repo: Repo, branch: str) -> None:
        out = self.root / f"{repo.repo_type}s" / repo.repo_id / branch
        if out.exists():
            shutil.rmtree(out)
        for path, entry in repo.files(branch).items():
            dest = out / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.root / "blobs" / entry["sha256"], dest)

    # -- API implementation (called by the handler, under the lock) ------------------------------------------
    def get_repo(self, repo_type: str, repo_id: str, authorized: bool) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authorized):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def create_repo(self, payload: dict, endpoint: str) -> dict:
        self.create_payloads.append(payload)
        repo_type = payload.get("type") or "model"
        name = payload["name"]
        repo_id = f"{payload.get('organization') or self.user}/{name}"
        if (repo_type, repo_id) in self.repos:
            raise HubError(409, "You already created this dataset repo", None,
                           {"url": f"{endpoint}/{_PREFIX[repo_type]}{repo_id}"})
        repo = Repo(repo_type, repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        self.repos[(repo_type, repo_id)] = repo
        files = {".gitattributes": self._store_blob(DEFAULT_GITATTRIBUTES, lfs=False)}
        self._commit(repo, "main", files, "initial commit")
        return {"url": f"{endpoint}/{_PREFIX[repo_type]}{repo_id}", "name": repo_id, "id": uuid.uuid4().hex}

    def repo_info(self, repo: Repo, rev: Optional[str]) -> dict:
        oid = repo.head(rev or "main")
        commit = repo.commits[oid]
        info = {"id": repo.repo_id, "_id": uuid.uuid4().hex, "author": repo.repo_id.split("/")[0], "sha": oid,
                "private": repo.private, "gated": False, "disabled": False, "lastModified": commit["date"],
                "createdAt": commit["date"], "downloads": 0, "likes": 0, "tags": [],
                "siblings": [{"rfilename": p} for p in sorted(commit["files"])]}
        if "README.md" in commit["files"]:
            info["cardData"] = _front_matter(self.blob_bytes(commit["files"]["README.md"]))
        return info

    def blob_bytes(self, entry: dict) -> bytes:
        return (self.root / "blobs" / entry["sha256"]).read_bytes()

    @staticmethod
    def entry_json(path: str, entry: dict) -> dict:
        out = {"type": "file", "oid": entry["git_oid"], "size": entry["size"], "path": path}
        if entry["lfs"]:
            out["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": 134}
        return out

    @staticmethod
    def tree_entries(files: dict, base: str, recursive: bool) -> list[dict]:
        base = base.strip("/")
        prefix = base + "/" if base else ""
        if base and not any(p.startswith(prefix) for p in files):
            if base in files:
                return [HubServer.entry_json(base, files[base])]
            raise HubError(404, f"{base} does not exist on the revision", "EntryNotFound")
        dirs: set[str] = set()
        out = []
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):].split("/")
            for depth in range(1, len(rest)):
                if recursive or depth == 1:
                    dirs.add(prefix + "/".join(rest[:depth]))
            if recursive or len(rest) == 1:
                out.append(HubServer.entry_json(path, files[path]))
        folders = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                   for d in sorted(dirs)]
        return folders + out

    def apply_commit(self, repo: Repo, rev: str, lines: list[dict], endpoint: str) -> dict:
        self.commit_payloads.append(lines)
        header = lines[0]["value"] if lines and lines[0].get("key") == "header" else {}
        if rev not in repo.branches:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        parent = header.get("parentCommit")
        if parent and parent != repo.branches[rev]:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.files(rev))
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "")
            if key == "file":
                data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"].encode()
                files[path] = self._store_blob(data, lfs=False)
            elif key == "lfsFile":
                blob = self.root / "blobs" / value["oid"]
                if not blob.exists():
                    raise HubError(422, f"LFS object {value['oid']} for {path} was never uploaded")
                files[path] = {"sha256": value["oid"], "size": value["size"], "lfs": True,
                               "git_oid": _git_blob_sha1(f"lfs {value['oid']}".encode())}
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                for p in [p for p in files if p.startswith(path.rstrip("/") + "/")]:
                    del files[p]
            else:
                raise HubError(400, f"unsupported commit operation {key!r}")
        oid = self._commit(repo, rev, files, header.get("summary", ""))
        return {"success": True, "commitOid": oid, "commitMessage": header.get("summary", ""),
                "commitUrl": f"{endpoint}/{_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{oid}",
                "hookOutput": ""}


def _front_matter(readme: bytes) -> Optional[dict]:
    text = readme.decode("utf-8", errors="replace")
    m = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.S)
    if not m:
        return None
    try:
        import yaml

        data = yaml.safe_load(m.group(1))
    except Exception:
        return None
    return data if isinstance(data, dict) else None


_REPO_API = re.compile(r"^/api/(models|datasets|spaces)/([^/]+)/([^/]+)(?:/(.*))?$")
_GIT_LFS = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+)/([^/]+)\.git/info/lfs/objects/batch$")
_RESOLVE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")


class _Handler(BaseHTTPRequestHandler):
    server_hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    # -- plumbing --------------------------------------------------------------------------------------------
    @property
    def hub(self) -> HubServer:
        return self.server_hub

    def _endpoint(self) -> str:
        return f"http://{self.headers.get('Host') or f'127.0.0.1:{self.hub.port}'}"

    def _authorized(self) -> bool:
        if self.hub.token is None:
            return True
        return self.headers.get("Authorization", "") == f"Bearer {self.hub.token}"

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: Optional[dict] = None, head: bool = False) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
        length = headers.pop("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", length)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: Optional[dict] = None, head: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), headers, head)

    def _error(self, err: HubError, head: bool = False) -> None:
        headers = {"X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._json(err.status, {"error": err.message, **err.extra}, headers, head)

    def _fail_mode(self, head: bool) -> bool:
        mode = self.hub.mode
        if mode in ("401", "403", "429", "500"):
            self._read_body()
            status = int(mode)
            message = {401: "Invalid credentials in Authorization header", 403: "You don't have the rights to do this",
                       429: "You have exceeded the rate limit", 500: "Internal Error"}[status]
            headers = {"X-Error-Message": message}
            if status == 429:
                headers["Retry-After"] = "0"
            self._json(status, {"error": message}, headers, head)
            return True
        return False

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        self.hub.requests.append((method, parts.path))
        head = method == "HEAD"
        if self._fail_mode(head):
            return
        try:
            self._route(method, parts.path, path, query, head)
        except HubError as e:
            self._error(e, head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = lambda self: self._dispatch("GET")  # noqa: E731
    do_HEAD = lambda self: self._dispatch("HEAD")  # noqa: E731
    do_POST = lambda self: self._dispatch("POST")  # noqa: E731
    do_PUT = lambda self: self._dispatch("PUT")  # noqa: E731
    do_DELETE = lambda self: self._dispatch("DELETE")  # noqa: E731

    def _require_auth(self) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")

    # -- routes ----------------------------------------------------------------------------------------------
    def _route(self, method: str, raw_path: str, path: str, query: dict, head: bool) -> None:
        hub = self.hub
        if path == "/api/whoami-v2" and method == "GET":
            self._require_auth()
            return self._json(200, {"type": "user", "name": hub.user, "fullname": hub.user, "orgs": [],
                                    "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if path == "/api/validate-yaml" and method == "POST":
            self._read_body()
            return self._json(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create" and method == "POST":
            payload = json.loads(self._read_body() or b"{}")
            self._require_auth()
            with hub.lock:
                return self._json(200, hub.create_repo(payload, self._endpoint()))
        if path.startswith("/__lfs/") and method == "PUT":
            return self._lfs_put(path[len("/__lfs/"):])
        if path == "/__lfs_verify" and method == "POST":
            self._read_body()
            return self._json(200, {"success": True})
        if path == "/info" or path.startswith("/info?"):
            raise HubError(404, "no dataset viewer here")

        m = _GIT_LFS.match(path)
        if m and method == "POST":
            return self._lfs_batch(m, json.loads(self._read_body() or b"{}"))
        m = _RESOLVE.match(raw_path)
        if m and method in ("GET", "HEAD"):
            return self._resolve(m, head)
        m = _REPO_API.match(raw_path)
        if m:
            return self._repo_api(method, m, query, head)
        self._read_body()
        raise HubError(404, f"no route for {method} {raw_path}")

    def _repo_from(self, kind: str, ns: str, name: str) -> Repo:
        repo_type = {"models": "model", "datasets": "dataset", "spaces": "space", None: "model"}[kind]
        with self.hub.lock:
            return self.hub.get_repo(repo_type, f"{unquote(ns)}/{unquote(name)}", self._authorized())

    def _repo_api(self, method: str, m: re.Match, query: dict, head: bool) -> None:
        hub = self.hub
        kind, ns, name, rest = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        body = self._read_body() if method in ("POST", "PUT") else b""
        repo = self._repo_from(kind, ns, name)
        segs = rest.split("/", 1) if rest else [""]
        action, tail = segs[0], (segs[1] if len(segs) > 1 else "")
        with hub.lock:
            if action == "" and method == "GET":
                return self._json(200, hub.repo_info(repo, None))
            if action == "revision" and method == "GET":
                return self._json(200, hub.repo_info(repo, unquote(tail)))
            if action == "branch" and method == "POST":
                self._require_auth()
                branch = unquote(tail)
                if branch in repo.branches:
                    raise HubError(409, f"Reference already exists: refs/heads/{branch}")
                start = (json.loads(body or b"{}") or {}).get("startingPoint") or "main"
                repo.branches[branch] = repo.head(start)
                hub._materialise(repo, branch)
                return self._json(200, {})
            if action == "preupload" and method == "POST":
                self._require_auth()
                repo.head(unquote(tail))
                payload = json.loads(body or b"{}")
                files = repo.files(unquote(tail))
                out = []
                for f in payload.get("files", []):
                    lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] > 10_000_000
                    existing = files.get(f["path"])
                    oid = None
                    if existing is not None:
                        oid = existing["sha256"] if lfs else existing["git_oid"]
                    out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular",
                                "shouldIgnore": False, "oid": oid})
                return self._json(200, {"files": out, "commitOid": repo.head(unquote(tail))})
            if action == "commit" and method == "POST":
                self._require_auth()
                if query.get("create_pr"):
                    raise HubError(400, "pull requests are not supported by the fake Hub")
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                return self._json(200, hub.apply_commit(repo, unquote(tail), lines, self._endpoint()))
            if action == "tree" and method == "GET":
                rev, _, sub = tail.partition("/")
                files = repo.files(unquote(rev))
                recursive = (query.get("recursive") or ["false"])[0].lower() in ("1", "true")
                return self._json(200, hub.tree_entries(files, unquote(sub), recursive))
            if action == "paths-info" and method == "POST":
                files = repo.files(unquote(tail))
                form = parse_qs(body.decode())
                out = []
                for p in form.get("paths", []):
                    p = p.strip("/")
                    if p in files:
                        out.append(hub.entry_json(p, files[p]))
                    elif any(f.startswith(p + "/") for f in files):
                        out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(),
                                    "size": 0, "path": p})
                return self._json(200, out)
            if action == "refs" and method == "GET":
                return self._json(200, {"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": o}
                                                     for b, o in repo.branches.items()],
                                        "converts": [], "tags": []})
        raise HubError(404, f"no route for {method} {self.path}")

    def _lfs_batch(self, m: re.Match, payload: dict) -> None:
        self._require_auth()
        self._repo_from({"datasets": "datasets", "spaces": "spaces", None: None}[m.group(1)], m.group(2), m.group(3))
        endpoint = self._endpoint()
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], obj["size"]
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not (self.hub.root / "blobs" / oid).exists():
                entry["actions"] = {"upload": {"href": f"{endpoint}/__lfs/{oid}"},
                                    "verify": {"href": f"{endpoint}/__lfs_verify"}}
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                   {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_put(self, oid: str) -> None:
        if self.hub.mode == "drop_upload":  # read half of the object, then hang up
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(max(1, length // 2))
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        data = self._read_body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, "uploaded content does not match its sha256")
        with self.hub.lock:
            self.hub._store_blob(data, lfs=True)
        self._send(200, b"", {"ETag": f'"{oid}"'})

    def _resolve(self, m: re.Match, head: bool) -> None:
        kind = m.group(1)
        repo = self._repo_from({"datasets": "datasets", "spaces": "spaces", None: None}[kind], m.group(2), m.group(3))
        rev, path = unquote(m.group(4)), unquote(m.group(5))
        with self.hub.lock:
            oid = repo.head(rev)
            entry = repo.commits[oid]["files"].get(path)
            if entry is None:
                raise HubError(404, "Entry not found", "EntryNotFound")
            data = self.hub.blob_bytes(entry)
        etag = entry["sha256"] if entry["lfs"] else entry["git_oid"]
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{etag}"', "X-Repo-Commit": oid,
                   "Accept-Ranges": "bytes"}
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start_s, _, end_s = rng[len("bytes="):].partition("-")
            if start_s == "":
                start, end = max(0, len(data) - int(end_s)), len(data) - 1
            else:
                start = int(start_s)
                end = min(int(end_s), len(data) - 1) if end_s else len(data) - 1
            if start >= len(data) and len(data) > 0:
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, head)
            chunk = data[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(chunk) - 1}/{len(data)}"
            return self._send(206, chunk, headers, head)
        if head:
            headers["Content-Length"] = str(len(data))
            return self._send(200, b"", headers, head=True)
        self._send(200, data, headers)


if __name__ == "__main__":  # manual use: python tests/hub_server.py /tmp/hub
    import sys

    with HubServer(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fake-hub") as srv:
        print(f"fake Hub at {srv.endpoint} (token {srv.token}); Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
