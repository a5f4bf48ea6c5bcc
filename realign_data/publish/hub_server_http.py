"""The HTTP side of the local Hub (:mod:`realign_data.publish.hub_server`): routes, payloads and failure modes.

The request handler reads and changes the state of the :class:`~realign_data.publish.hub_server.HubServer` it serves
(``self.hub``); the routes are listed in that module's docstring.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from realign_data.publish.hub_server import HubServer, Repo

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


def _front_matter(readme: bytes) -> Optional[dict]:
    text = readme.decode("utf-8", errors="replace")
    m = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.S)
    if not m:
        return None
    try:
        import yaml

        data = yaml.safe_load(m.group(1))
    except Exception:  # noqa: BLE001 - no PyYAML, or front matter it cannot read: the card has no metadata
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
            message = {
                401: "Invalid credentials in Authorization header",
                403: "You don't have the rights to do this",
                429: "You have exceeded the rate limit",
                500: "Internal Error",
            }[status]
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
            return self._json(
                200,
                {
                    "type": "user",
                    "name": hub.user,
                    "fullname": hub.user,
                    "orgs": [],
                    "auth": {"type": "access_token", "accessToken": {"role": "write"}},
                },
            )
        if path == "/api/validate-yaml" and method == "POST":
            self._read_body()
            return self._json(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create" and method == "POST":
            payload = json.loads(self._read_body() or b"{}")
            self._require_auth()
            with hub.lock:
                return self._json(200, hub.create_repo(payload, self._endpoint()))
        if path.startswith("/__lfs/") and method == "PUT":
            return self._lfs_put(path[len("/__lfs/") :])
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
                    out.append(
                        {
                            "path": f["path"],
                            "uploadMode": "lfs" if lfs else "regular",
                            "shouldIgnore": False,
                            "oid": oid,
                        }
                    )
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
                        out.append(
                            {"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p}
                        )
                return self._json(200, out)
            if action == "refs" and method == "GET":
                return self._json(
                    200,
                    {
                        "branches": [
                            {"name": b, "ref": f"refs/heads/{b}", "targetCommit": o} for b, o in repo.branches.items()
                        ],
                        "converts": [],
                        "tags": [],
                    },
                )
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
                entry["actions"] = {
                    "upload": {"href": f"{endpoint}/__lfs/{oid}"},
                    "verify": {"href": f"{endpoint}/__lfs_verify"},
                }
            objects.append(entry)
        self._json(
            200,
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

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
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{etag}"',
            "X-Repo-Commit": oid,
            "Accept-Ranges": "bytes",
        }
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start_s, _, end_s = rng[len("bytes=") :].partition("-")
            if start_s == "":
                start, end = max(0, len(data) - int(end_s)), len(data) - 1
            else:
                start = int(start_s)
                end = min(int(end_s), len(data) - 1) if end_s else len(data) - 1
            if start >= len(data) and len(data) > 0:
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, head)
            chunk = data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(chunk) - 1}/{len(data)}"
            return self._send(206, chunk, headers, head)
        if head:
            headers["Content-Length"] = str(len(data))
            return self._send(200, b"", headers, head=True)
        self._send(200, data, headers)
