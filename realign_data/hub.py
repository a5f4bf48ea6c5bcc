"""Publish a Re-Align dataset to the Hugging Face Hub with a reproducible dataset card.

    from realign_data.hub import push_to_hub, load_build_config

    result = push_to_hub("out/my_build", "me/realign-coco", private=True)   # a build directory ...
    result = push_to_hub(dataset, "me/realign-coco", build_config=cfg)      # ... or a datasets.Dataset
    cfg = load_build_config("me/realign-coco")          # realign_build.json of the default config
    cfg = load_build_config("out/my_build/realign_build.json")              # or a local file

What a push does, in two commits on the target branch:

1. ``datasets.Dataset.push_to_hub``: Parquet shards with the image bytes embedded under ``data/`` (or
   ``{config_name}/`` for another config), and the ``configs`` / ``dataset_info`` YAML of the card.
2. The provenance next to the data (``{data_dir}/realign_build.json`` = the full build configuration,
   ``{data_dir}/build_report.json``, ``{data_dir}/index_manifest.json`` = the knowledge base manifest) and the
   dataset card, merged with the card already on the Hub (see :mod:`realign_data.dataset_card`).

The local dataset is only read (memory-mapped Arrow files, ``keep_in_memory`` shards for the upload): nothing is
ever written into the build directory. Hub failures (no token, unreachable Hub, HTTP 401/403/404/429/5xx) raise
:class:`HubPushError` with one sentence naming the HTTP status and what to do.

Heavy imports (``datasets``, ``huggingface_hub``) happen inside the functions.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from realign_data.dataset_card import Provenance, data_dir_of, find_key, merge_card

BUILD_CONFIG_FILENAME = "realign_build.json"
BUILD_REPORT_FILENAME = "build_report.json"
INDEX_MANIFEST_FILENAME = "index_manifest.json"

# where a build directory may keep its provenance (first existing file wins)
_CONFIG_CANDIDATES = (BUILD_CONFIG_FILENAME, "build_config.json", "config.json", "build.json")
_REPORT_CANDIDATES = (BUILD_REPORT_FILENAME, "report.json")
_MANIFEST_CANDIDATES = (INDEX_MANIFEST_FILENAME, "manifest.json")
_INDEX_KEYS = ("index", "index_dir", "index_path", "knowledge_base", "kb", "kb_dir")

__all__ = [
    "push_to_hub",
    "load_build_config",
    "read_provenance",
    "find_dataset_dir",
    "PushResult",
    "HubPushError",
    "HubUsageError",
    "BUILD_CONFIG_FILENAME",
    "BUILD_REPORT_FILENAME",
    "INDEX_MANIFEST_FILENAME",
]


class HubPushError(RuntimeError):
    """A push (or a fetch) failed on the Hub side. ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


class HubUsageError(ValueError):
    """A bad argument: missing directory, not a dataset, malformed repo id, bad config name."""


@dataclass
class PushResult:
    repo_id: str
    url: str
    config_name: str
    splits: dict[str, int]  # split -> rows pushed
    data_dir: str
    commit_oid: Optional[str]
    files: list[str] = field(default_factory=list)  # provenance files uploaded next to the data
    revision: str = "main"


# ---------------------------------------------------------------------------------------------------------------
# local side: find the dataset and its provenance (read only)
# ---------------------------------------------------------------------------------------------------------------
def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file())


def _parquet_shards(path: Path) -> list[Path]:
    return sorted((path / "data").glob("*.parquet")) if (path / "data").is_dir() else []


def find_dataset_dir(path: Union[str, os.PathLike]) -> Path:
    """The dataset directory of a build: ``path`` itself or ``path/dataset`` holding a ``save_to_disk``
    dataset, or ``path`` holding Parquet shards under ``data/`` (``realign-data build --format parquet``)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise HubUsageError(f"dataset directory {str(path)!r} does not exist.")
    for candidate in (path, path / "dataset", path / "hf_dataset"):
        if candidate.is_dir() and (_is_saved_dataset(candidate) or _parquet_shards(candidate)):
            return candidate
    raise HubUsageError(
        f"{str(path)!r} is not a built dataset: expected a `datasets` save_to_disk directory "
        "(state.json + dataset_info.json, or dataset_dict.json) or Parquet shards under data/, there or in its "
        "'dataset/' sub-folder (the output of `realign-data build`).")


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _first_json(dirs: list[Path], names: tuple[str, ...]) -> tuple[Optional[dict], Optional[Path]]:
    for d in dirs:
        for name in names:
            p = d / name
            if p.is_file():
                data = _read_json(p)
                if data is not None:
                    return data, p
    return None, None


def _to_dict(obj: Any) -> Optional[dict]:
    if obj is None:
        return None
    if is_dataclass(obj) and not isinstance(obj, type):
        obj = asdict(obj)
    elif hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    elif isinstance(obj, (str, os.PathLike)):
        data = _read_json(Path(obj))
        if data is None:
            raise HubUsageError(f"could not read a JSON object from {str(obj)!r}.")
        obj = data
    if not isinstance(obj, Mapping):
        raise HubUsageError(f"expected a mapping, a dataclass or a JSON file, got {type(obj).__name__}.")
    return json.loads(json.dumps(dict(obj), default=str))  # JSON-safe copy (Paths, enums -> str)


def _find_manifest(config: Optional[dict], base_dirs: list[Path]) -> tuple[Optional[dict], Optional[str]]:
    """The knowledge base manifest named by the build configuration (an index directory or name)."""
    if not config:
        return None, None
    for key in _INDEX_KEYS:
        _, value = find_key(config, (key,))
        if isinstance(value, Mapping):  # e.g. {"index": {"path": ...}}
            _, value = find_key(value, ("path", "dir", "name"))
        if not isinstance(value, str) or not value:
            continue
        candidates = [Path(value).expanduser()] + [b / value for b in base_dirs]
        try:  # a name under $REALIGN_HOME/indexes
            from realign_data.knowledge_base import resolve_index

            candidates.append(Path(resolve_index(value, must_exist=False)))
        except Exception:  # noqa: BLE001 - the knowledge base module is optional here
            pass
        for c in candidates:
            m = c / "manifest.json" if c.is_dir() else c
            if m.is_file() and m.name.endswith(".json"):
                data = _read_json(m)
                if data is not None:
                    return data, str(m)
        return None, value
    return None, None


def corpus_license(config: Optional[dict], manifest: Optional[dict]) -> Optional[str]:
    """The licence of the image corpus when it can be known, as a Hub licence id; else None."""
    for obj in (config, manifest):
        if obj:
            _, lic = find_key(obj, ("license", "corpus_license", "licence"))
            if isinstance(lic, str) and lic:
                return lic
    source = None
    if manifest and isinstance(manifest.get("source"), Mapping):
        source = manifest["source"]
    elif config:
        _, src = find_key(config, ("corpus", "source", "corpus_source"))
        source = src if isinstance(src, Mapping) else None
    if not source or source.get("type") != "coco" or not source.get("root"):
        return None
    ann = Path(str(source["root"])) / "annotations"
    if not ann.is_dir():
        return None
    names: set[str] = set()
    for f in sorted(ann.glob("*.json")):
        if f.stat().st_size > 32_000_000:  # a real COCO file: too big to parse for a licence
            continue
        data = _read_json(f)
        for lic in (data or {}).get("licenses") or []:
            if isinstance(lic, Mapping):
                names.add(f"{lic.get('name', '')} {lic.get('url', '')}".lower())
    if not names:
        return None
    ids = {_license_id(n) for n in names}
    return ids.pop() if len(ids) == 1 and None not in ids else "other"


def _license_id(text: str) -> Optional[str]:
    if "cc0" in text or "publicdomain/zero" in text:
        return "cc0-1.0"
    if "by/4.0" in text or "attribution 4.0" in text:
        return "cc-by-4.0"
    if "by-sa/4.0" in text:
        return "cc-by-sa-4.0"
    return None


def read_provenance(path: Union[str, os.PathLike], *, build_config: Any = None, build_report: Any = None,
                    index_manifest: Any = None) -> Provenance:
    """Collect what a build directory says about how it was made. Missing pieces become notes, not errors.

    Looks in ``path``, the dataset directory and its parent for ``realign_build.json`` (or
    ``build_config.json``), ``build_report.json`` and the knowledge base ``manifest.json`` (through the index
    named in the build configuration, else an ``index_manifest.json`` copy). Explicit arguments win.
    """
    root = Path(path).expanduser()
    dirs = [root]
    try:
        ds_dir = find_dataset_dir(root)
        dirs += [d for d in (ds_dir, ds_dir.parent) if d not in dirs]
    except HubUsageError:
        pass
    prov = Provenance()
    prov.config = _to_dict(build_config) if build_config is not None else _first_json(dirs, _CONFIG_CANDIDATES)[0]
    prov.report = _to_dict(build_report) if build_report is not None else _first_json(dirs, _REPORT_CANDIDATES)[0]
    if index_manifest is not None:
        prov.manifest = _to_dict(index_manifest)
    else:
        prov.manifest, where = _find_manifest(prov.config, dirs)
        if prov.manifest is None and prov.report:  # the builder records the knowledge base it used
            m2, w2 = _find_manifest(prov.report.get("provenance"), dirs)
            prov.manifest, where = (m2, w2) if m2 is not None else (None, where or w2)
        if prov.manifest is None:
            prov.manifest = _first_json(dirs, _MANIFEST_CANDIDATES)[0]
        if prov.manifest is None and where:
            prov.notes.append(f"The knowledge base manifest of index {where!r} was not available when pushing.")
    _fill_notes(prov)
    return prov


def _fill_notes(prov: Provenance) -> None:
    if prov.config is None:
        prov.notes.append("No build configuration (realign_build.json) was found: this config cannot be "
                          "rebuilt from the card.")
    if prov.report is None:
        prov.notes.append("No build report (build_report.json) was found.")
    if prov.manifest is None and not any("manifest" in n for n in prov.notes):
        prov.notes.append("No knowledge base manifest was found (encoder and index settings unknown).")
    if prov.license is None:
        prov.license = corpus_license(prov.config, prov.manifest)


# ---------------------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------------------
def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def explain_hub_error(exc: BaseException, repo_id: str, action: str = "push to") -> HubPushError:
    """One clear sentence for a failure talking to the Hub (HTTP status + what to do)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    endpoint = _endpoint()
    for e in _chain(exc):
        if isinstance(e, OfflineModeIsEnabled):
            return HubPushError(f"cannot {action} {repo_id}: offline mode is on (HF_HUB_OFFLINE=1); unset it "
                                "and run the command again.")
        if isinstance(e, HfHubHTTPError) and getattr(e, "response", None) is not None:
            status = e.response.status_code
            server = (e.response.headers.get("X-Error-Message") or "").strip()
            detail = f" (server says: {server})" if server else ""
            if status == 401:
                msg = (f"the Hub at {endpoint} rejected the token (HTTP 401){detail}: run `hf auth login` with a "
                       "token that has write access, or pass --token / set HF_TOKEN.")
            elif status == 403:
                msg = (f"the token may not write to {repo_id} (HTTP 403){detail}: use a token with write access "
                       "to that namespace (fine-grained tokens need 'write' on the repo or organisation).")
            elif status == 404:
                msg = (f"{repo_id} (or its branch) was not found on {endpoint} (HTTP 404){detail}: check the "
                       "repo id, the namespace (your user or an organisation you belong to) and --revision.")
            elif status == 429:
                msg = (f"the Hub is rate limiting this account (HTTP 429){detail}: wait a few minutes and run the "
                       "same command again (a re-push replaces the shards of the split, it never duplicates rows).")
            elif status == 412 or status == 409:
                msg = (f"another commit landed on {repo_id} during the push (HTTP {status}): run the same "
                       "command again.")
            elif status >= 500:
                msg = (f"the Hub had a server error (HTTP {status}){detail}: try again in a few minutes; "
                       "https://status.huggingface.co shows incidents.")
            else:
                msg = f"the Hub answered HTTP {status}{detail}."
            return HubPushError(f"could not {action} {repo_id}: {msg}", status=status)
    for e in _chain(exc):
        mod = type(e).__module__ or ""
        if mod.startswith(("httpx", "httpcore", "h11", "urllib3", "requests")) or isinstance(
                e, (ConnectionError, TimeoutError)):
            return HubPushError(
                f"could not {action} {repo_id}: the connection to the Hub at {endpoint} failed or was lost "
                f"({type(e).__name__}: {e}). Check the network (and HF_ENDPOINT), then run the same command again; "
                "the local dataset was not modified and a re-push replaces any partial upload.")
    return HubPushError(f"could not {action} {repo_id}: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------------------------
# push
# ---------------------------------------------------------------------------------------------------------------
def _load_local(dataset_or_dir: Any):
    """(dataset or DatasetDict, provenance root or None). Loading from disk memory-maps; nothing is written."""
    import datasets

    if isinstance(dataset_or_dir, (datasets.Dataset, datasets.DatasetDict)):
        return dataset_or_dir, None
    if not isinstance(dataset_or_dir, (str, os.PathLike)):
        raise HubUsageError(f"expected a datasets.Dataset, a DatasetDict or a build directory, got "
                            f"{type(dataset_or_dir).__name__}.")
    ds_dir = find_dataset_dir(dataset_or_dir)
    try:
        if _is_saved_dataset(ds_dir):
            ds = datasets.load_from_disk(str(ds_dir), keep_in_memory=False)
        else:  # Parquet shards: read through the datasets cache, never next to the files
            by_split: dict[str, list[str]] = {}
            for p in _parquet_shards(ds_dir):  # data/<split>-00000-of-00001.parquet (curriculum: several splits)
                by_split.setdefault(p.name.split("-", 1)[0], []).append(str(p))
            if set(by_split) <= {"train"} or len(by_split) == 1:
                ds = datasets.Dataset.from_parquet([f for files in by_split.values() for f in files])
            else:
                order = ("train", "easy", "medium", "hard")
                ds = datasets.DatasetDict({k: datasets.Dataset.from_parquet(by_split[k]) for k in sorted(
                    by_split, key=lambda k: (order.index(k) if k in order else len(order), k))})
    except Exception as e:  # noqa: BLE001
        raise HubUsageError(f"could not open the saved dataset in {str(ds_dir)!r}: {e}") from e
    return ds, Path(dataset_or_dir)


def _resolve_token(token: Optional[str]) -> str:
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubPushError("no Hugging Face token found: run `hf auth login` (or set HF_TOKEN, or pass --token) "
                           "with a token that has write access, then run the same command again.")
    return token


def push_to_hub(
    dataset_or_dir: Any,
    repo_id: str,
    *,
    config_name: str = "default",
    split: Optional[str] = None,
    private: Optional[bool] = None,
    token: Optional[str] = None,
    revision: Optional[str] = None,
    license: Optional[str] = None,
    pretty_name: Optional[str] = None,
    max_shard_size: Optional[Union[int, str]] = None,
    num_shards: Optional[int] = None,
    commit_message: Optional[str] = None,
    build_config: Any = None,
    build_report: Any = None,
    index_manifest: Any = None,
    progress: bool = True,
) -> PushResult:
    """Push a Re-Align dataset and its provenance to the Hub and write/merge its dataset card.

    Args:
        dataset_or_dir: a build output directory (the ``save_to_disk`` dataset itself or its parent holding
            ``dataset/``, ``realign_build.json``, ``build_report.json``), or a ``datasets.Dataset`` /
            ``DatasetDict`` (then pass ``build_config`` / ``build_report`` for the card).
        repo_id: ``namespace/name`` (a bare ``name`` goes to the token's user).
        config_name: the Hub config (subset) to write; other configs already on the Hub are kept.
        split: split name (default: the dataset's split, else ``train``; every split of a DatasetDict).
        private: create the repo private (ignored when it exists already, as on the Hub).
        token: a write token; default ``HF_TOKEN`` or the one saved by ``hf auth login``.
        revision: branch to push to (created from ``main`` when missing).
        license: Hub licence id for the card; default: the card's current one, else the corpus licence when
            known, else ``other``.
        max_shard_size / num_shards: Parquet sharding, as in ``datasets.Dataset.push_to_hub``.
        build_config / build_report / index_manifest: dict, dataclass or JSON path overriding what is found in
            the directory.

    Returns a :class:`PushResult`. Raises :class:`HubPushError` (Hub side, with the HTTP status) or
    :class:`HubUsageError` (bad arguments). Never writes into the local dataset directory.
    """
    import datasets
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if config_name == "data" or not config_name:
        raise HubUsageError(f"config name {config_name!r} is not allowed: choose another name (e.g. 'default').")
    ds, root = _load_local(dataset_or_dir)
    if root is not None:
        prov = read_provenance(root, build_config=build_config, build_report=build_report,
                               index_manifest=index_manifest)
    else:
        prov = Provenance(config=_to_dict(build_config), report=_to_dict(build_report),
                          manifest=_to_dict(index_manifest))
        _fill_notes(prov)
    if isinstance(ds, datasets.DatasetDict):
        if split is not None:
            if split not in ds:
                raise HubUsageError(f"split {split!r} is not in the dataset; it has {sorted(ds)}.")
            parts = {split: ds[split]}
        else:
            parts = dict(ds)
    else:
        parts = {split or (str(ds.split) if ds.split is not None else "train"): ds}
    if not parts or any(len(p) == 0 for p in parts.values()):
        raise HubUsageError("the dataset is empty: nothing to push.")
    columns = next(iter(parts.values())).column_names

    if not progress:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()

    token = _resolve_token(token)
    api = HfApi(token=token)
    try:
        user = api.whoami()["name"]
    except Exception as e:  # noqa: BLE001
        raise explain_hub_error(e, repo_id, "authenticate to push to") from None
    if "/" not in repo_id:
        repo_id = f"{user}/{repo_id}"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise HubUsageError(f"invalid repo id {repo_id!r}: use 'namespace/name' ({e}).") from None

    data_dir = config_name if config_name != "default" else "data"
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        commit = None
        for split_name, part in parts.items():
            commit = part.push_to_hub(
                repo_id, config_name=config_name, split=split_name, data_dir=data_dir, private=private,
                token=token, revision=revision, max_shard_size=max_shard_size, num_shards=num_shards,
                commit_message=commit_message or f"realign: upload {config_name}/{split_name} ({len(part)} pairs)",
            )
        files, card_commit = _push_card_and_provenance(
            api, repo_id, revision=revision, parent=commit.oid if commit else None, config_name=config_name,
            data_dir=data_dir, prov=prov, columns=columns, license=license, pretty_name=pretty_name,
            num_examples=sum(len(p) for p in parts.values()), commit_message=commit_message)
    except (HubUsageError, HubPushError):
        raise
    except Exception as e:  # noqa: BLE001 - every Hub-side failure becomes one clear message
        raise explain_hub_error(e, repo_id) from None
    return PushResult(repo_id=repo_id, url=str(url), config_name=config_name,
                      splits={k: len(v) for k, v in parts.items()}, data_dir=data_dir,
                      commit_oid=card_commit or (commit.oid if commit else None), files=files,
                      revision=revision or "main")


def _download_json(api, repo_id: str, path: str, revision: str, cache_dir: str) -> Optional[dict]:
    from huggingface_hub.errors import EntryNotFoundError

    try:
        local = api.hf_hub_download(repo_id, path, repo_type="dataset", revision=revision, cache_dir=cache_dir)
    except EntryNotFoundError:
        return None
    return _read_json(Path(local))


def _download_text(api, repo_id: str, path: str, revision: str, cache_dir: str) -> Optional[str]:
    from huggingface_hub.errors import EntryNotFoundError

    try:
        local = api.hf_hub_download(repo_id, path, repo_type="dataset", revision=revision, cache_dir=cache_dir)
    except EntryNotFoundError:
        return None
    return Path(local).read_text(encoding="utf-8")


def _push_card_and_provenance(api, repo_id: str, *, revision: Optional[str], parent: Optional[str],
                              config_name: str, data_dir: str, prov: Provenance, columns: list[str],
                              license: Optional[str], pretty_name: Optional[str], num_examples: int,
                              commit_message: Optional[str]) -> tuple[list[str], Optional[str]]:
    """Second commit: provenance JSON next to the data + the merged card. Retries if a commit sneaks in."""
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub import DatasetCard

    uploads: dict[str, dict] = {}
    if prov.config is not None:
        uploads[f"{data_dir}/{BUILD_CONFIG_FILENAME}"] = prov.config
    if prov.report is not None:
        uploads[f"{data_dir}/{BUILD_REPORT_FILENAME}"] = prov.report
    if prov.manifest is not None:
        uploads[f"{data_dir}/{INDEX_MANIFEST_FILENAME}"] = prov.manifest
    last_error: Optional[Exception] = None
    for _attempt in range(5):
        head = api.repo_info(repo_id, repo_type="dataset", revision=revision).sha if parent is None else parent
        with tempfile.TemporaryDirectory(prefix="realign-hub-") as cache:
            readme = _download_text(api, repo_id, "README.md", head, cache)
            card_data = DatasetCard(readme or "---\n---\n", ignore_metadata_errors=True).data.to_dict()
            provenance: dict[str, Optional[Provenance]] = {config_name: prov}
            for entry in card_data.get("configs") or []:
                name = entry.get("config_name", "default") if isinstance(entry, Mapping) else None
                if not name or name == config_name:
                    continue
                other_dir = data_dir_of(entry)
                if not other_dir:
                    provenance[name] = None
                    continue
                other = Provenance(
                    config=_download_json(api, repo_id, f"{other_dir}/{BUILD_CONFIG_FILENAME}", head, cache),
                    report=_download_json(api, repo_id, f"{other_dir}/{BUILD_REPORT_FILENAME}", head, cache),
                    manifest=_download_json(api, repo_id, f"{other_dir}/{INDEX_MANIFEST_FILENAME}", head, cache))
                provenance[name] = other if (other.config or other.report or other.manifest) else None
        new_readme = merge_card(readme, repo_id=repo_id, provenance=provenance, columns=columns, license=license,
                                pretty_name=pretty_name, num_examples=num_examples)
        ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=(json.dumps(obj, indent=2, ensure_ascii=False)
                                                                  + "\n").encode("utf-8"))
               for p, obj in uploads.items()]
        ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=new_readme.encode("utf-8")))
        try:
            info = api.create_commit(
                repo_id, operations=ops, repo_type="dataset", revision=revision, parent_commit=head,
                commit_message=(commit_message + " (card)") if commit_message else
                f"realign: dataset card and build provenance for config {config_name}")
            return list(uploads), info.oid
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if status in (409, 412):
                last_error, parent = e, None  # someone committed in between: re-read the card and retry
                continue
            raise
    assert last_error is not None
    raise last_error


# ---------------------------------------------------------------------------------------------------------------
# build configuration: local file or Hub repo
# ---------------------------------------------------------------------------------------------------------------
def load_build_config(path_or_repo: Union[str, os.PathLike], *, config_name: str = "default",
                      revision: Optional[str] = None, token: Optional[str] = None) -> dict:
    """Return the build configuration (a dict) that produced a dataset, to rebuild it.

    ``path_or_repo`` may be:

    * a local JSON file (``realign_build.json``) or a build directory containing one;
    * a Hub dataset repo id ``namespace/name`` (optionally ``namespace/name:config``): fetches
      ``{data_dir}/realign_build.json`` of that config (``data/`` for ``default``), falling back to a root
      ``realign_build.json``;
    * ``hf://datasets/namespace/name[@revision]/path/realign_build.json``.

    Raises :class:`HubUsageError` when a local path is unusable and :class:`HubPushError` when the Hub cannot
    give the file (offline, 401/403/404, network), with the HTTP status.
    """
    text = str(path_or_repo)
    local = Path(text).expanduser()
    if local.exists():
        if local.is_dir():
            data, _ = _first_json([local] + ([find_dataset_dir(local).parent] if _has_dataset(local) else []),
                                  _CONFIG_CANDIDATES)
            if data is None:
                raise HubUsageError(f"no {BUILD_CONFIG_FILENAME} in directory {text!r}.")
            return data
        data = _read_json(local)
        if data is None:
            raise HubUsageError(f"{text!r} is not a JSON object (expected a {BUILD_CONFIG_FILENAME}).")
        return data
    if text.endswith(".json") and not text.startswith("hf://"):
        raise HubUsageError(f"build configuration file {text!r} does not exist.")

    paths: list[str]
    if text.startswith("hf://"):
        rest = text[len("hf://"):]
        if rest.startswith("datasets/"):
            rest = rest[len("datasets/"):]
        parts = rest.split("/")
        if len(parts) < 3:
            raise HubUsageError(f"{text!r}: expected hf://datasets/namespace/name/path/to/{BUILD_CONFIG_FILENAME}.")
        repo_id, file_path = "/".join(parts[:2]), "/".join(parts[2:])
        if "@" in repo_id:
            repo_id, revision = repo_id.split("@", 1)
        paths = [file_path]
    else:
        repo_id = text
        if ":" in repo_id:
            repo_id, config_name = repo_id.rsplit(":", 1)
        if repo_id.count("/") != 1:
            raise HubUsageError(f"{text!r} is neither an existing file nor a Hub dataset id 'namespace/name'.")
        data_dir = config_name if config_name != "default" else "data"
        paths = [f"{data_dir}/{BUILD_CONFIG_FILENAME}", BUILD_CONFIG_FILENAME]

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        for p in paths:
            try:
                local_file = hf_hub_download(repo_id, p, repo_type="dataset", revision=revision, token=token)
            except EntryNotFoundError:
                continue
            data = _read_json(Path(local_file))
            if data is None:
                raise HubUsageError(f"{p} in {repo_id} is not a JSON object.")
            return data
    except (HubUsageError, HubPushError):
        raise
    except Exception as e:  # noqa: BLE001
        raise explain_hub_error(e, repo_id, "fetch the build configuration of") from None
    raise HubPushError(f"{repo_id} has no {' or '.join(paths)} (HTTP 404): it was not pushed with "
                       "`realign-data push`, or the config name is different.", status=404)


def _has_dataset(path: Path) -> bool:
    try:
        find_dataset_dir(path)
        return True
    except HubUsageError:
        return False
