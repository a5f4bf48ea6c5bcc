"""A small local Hugging Face Hub, to try ``realign-data push`` and ``load_dataset`` without the network.

``realign-data hub serve DIR`` runs it and prints the variables to export (see docs/hub.md, *A local Hub*); the
test suite uses it for every push test.

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

Repos live in memory as long as the server runs (a restart starts empty); the files of every branch head are
written under ``DIR``. Usage::

    with HubServer(tmp_path / "hub", token="hf_test") as hub:
        env = hub.client_env(tmp_path / "home")       # HF_ENDPOINT, HF_TOKEN, HF_HUB_DISABLE_XET, ...
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import threading
import uuid
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

from realign_data.publish.hub_server_http import (
    _PREFIX,
    DEFAULT_GITATTRIBUTES,
    LFS_SUFFIXES,
    HubError,
    _front_matter,
    _git_blob_sha1,
    _Handler,
    _now,
)


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

    def __init__(
        self,
        root: str | os.PathLike,
        token: Optional[str] = "hf_test_token",
        user: str = "tester",
        port: int = 0,
        host: str = "127.0.0.1",
    ):
        self.root = Path(root)
        self.host, self.requested_port = host, port
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
    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._httpd = ThreadingHTTPServer((self.host, self.requested_port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client_env(self, home: str | os.PathLike, token: Optional[str] = "default") -> dict[str, str]:
        """Environment for a client subprocess: online, pointed here, no Xet, caches under ``home``."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HF_", "HUGGINGFACE_")) and k not in ("TRANSFORMERS_OFFLINE",)
        }
        home = Path(home)
        env.update(
            {
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
            }
        )
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

    def put_file(
        self,
        repo_id: str,
        path: str,
        data: bytes,
        revision: str = "main",
        repo_type: str = "dataset",
        message: str = "edit on the Hub",
    ) -> str:
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
        repo.commits[oid] = {
            "files": files,
            "parent": parent if parent else repo.branches.get(branch),
            "title": title,
            "date": _now(),
        }
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
            raise HubError(
                409, "You already created this dataset repo", None, {"url": f"{endpoint}/{_PREFIX[repo_type]}{repo_id}"}
            )
        repo = Repo(repo_type, repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        self.repos[(repo_type, repo_id)] = repo
        files = {".gitattributes": self._store_blob(DEFAULT_GITATTRIBUTES, lfs=False)}
        self._commit(repo, "main", files, "initial commit")
        return {"url": f"{endpoint}/{_PREFIX[repo_type]}{repo_id}", "name": repo_id, "id": uuid.uuid4().hex}

    def repo_info(self, repo: Repo, rev: Optional[str]) -> dict:
        oid = repo.head(rev or "main")
        commit = repo.commits[oid]
        info = {
            "id": repo.repo_id,
            "_id": uuid.uuid4().hex,
            "author": repo.repo_id.split("/")[0],
            "sha": oid,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "lastModified": commit["date"],
            "createdAt": commit["date"],
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": [{"rfilename": p} for p in sorted(commit["files"])],
        }
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
            rest = path[len(prefix) :].split("/")
            for depth in range(1, len(rest)):
                if recursive or depth == 1:
                    dirs.add(prefix + "/".join(rest[:depth]))
            if recursive or len(rest) == 1:
                out.append(HubServer.entry_json(path, files[path]))
        folders = [
            {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
            for d in sorted(dirs)
        ]
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
                data = (
                    base64.b64decode(value["content"])
                    if value.get("encoding") == "base64"
                    else value["content"].encode()
                )
                files[path] = self._store_blob(data, lfs=False)
            elif key == "lfsFile":
                blob = self.root / "blobs" / value["oid"]
                if not blob.exists():
                    raise HubError(422, f"LFS object {value['oid']} for {path} was never uploaded")
                files[path] = {
                    "sha256": value["oid"],
                    "size": value["size"],
                    "lfs": True,
                    "git_oid": _git_blob_sha1(f"lfs {value['oid']}".encode()),
                }
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
        return {
            "success": True,
            "commitOid": oid,
            "commitMessage": header.get("summary", ""),
            "commitUrl": f"{endpoint}/{_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{oid}",
            "hookOutput": "",
        }
