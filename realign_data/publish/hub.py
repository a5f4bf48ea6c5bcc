"""Publish a Re-Align dataset to the Hugging Face Hub with a reproducible dataset card.

    from realign_data.publish.hub import push_to_hub, load_build_config

    result = push_to_hub("out/my_build", "me/realign-coco", private=True)   # a build directory ...
    result = push_to_hub(dataset, "me/realign-coco", build_config=cfg)      # ... or a datasets.Dataset
    cfg = load_build_config("me/realign-coco")          # realign_build.json of the default config
    cfg = load_build_config("out/my_build/realign_build.json")              # or a local file

What a push does, in two commits on the target branch:

1. ``datasets.Dataset.push_to_hub``: Parquet shards with the image bytes embedded under ``data/`` (or
   ``{config_name}/`` for another config), and the ``configs`` / ``dataset_info`` YAML of the card.
2. The provenance next to the data (``{data_dir}/realign_build.json`` = the full build configuration,
   ``{data_dir}/build_report.json``, ``{data_dir}/index_manifest.json`` = the knowledge base manifest) and the
   dataset card, merged with the card already on the Hub (see :mod:`realign_data.publish.dataset_card`).

The local dataset is only read (memory-mapped Arrow files, ``keep_in_memory`` shards for the upload): nothing is
ever written into the build directory. Hub failures (no token, unreachable Hub, HTTP 401/403/404/429/5xx) raise
:class:`HubPushError` with one sentence naming the HTTP status and what to do.

Heavy imports (``datasets``, ``huggingface_hub``, ``tenacity``) happen inside the functions.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from realign_data.building.output import CONFIG_FILE, REPORT_FILE, dataset_dir
from realign_data.publish.build_config_loader import load_build_config
from realign_data.publish.dataset_card import INDEX_MANIFEST_FILE, data_dir_of, merge_card
from realign_data.publish.hub_errors import HubPushError, HubUsageError, explain_hub_error
from realign_data.publish.provenance import Provenance, ProvenanceError, fill_notes, read_json, read_provenance, to_dict
from realign_data.runtime.hub_deadline import HUB_TIMEOUT, hub_deadline, hub_reachable
from realign_data.runtime.redact import redact_text, redact_tree

COMMIT_ATTEMPTS = 5  # the card commit is retried when another commit lands first (HTTP 409/412)

__all__ = [
    "push_to_hub",
    "load_build_config",
    "read_provenance",
    "find_dataset_dir",
    "hub_reachable",
    "PushResult",
    "HubPushError",
    "HubUsageError",
]


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
def find_dataset_dir(path: Union[str, os.PathLike]) -> Path:
    """The dataset directory of a build: ``path`` itself, or the ``dataset/`` folder of a ``realign-data demo``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise HubUsageError(f"dataset directory {str(path)!r} does not exist.")
    found = dataset_dir(path)
    if found is None:
        raise HubUsageError(
            f"{str(path)!r} is not a built dataset: expected a `datasets` save_to_disk directory "
            "(state.json + dataset_info.json, or dataset_dict.json) or Parquet shards under data/, there or in its "
            "'dataset/' sub-folder (the output of `realign-data build`)."
        )
    return found


# ---------------------------------------------------------------------------------------------------------------
# push
# ---------------------------------------------------------------------------------------------------------------
def _load_local(dataset_or_dir: Any):
    """(dataset or DatasetDict, provenance root or None). Loading from disk memory-maps; nothing is written."""
    import datasets

    if isinstance(dataset_or_dir, (datasets.Dataset, datasets.DatasetDict)):
        return dataset_or_dir, None
    if not isinstance(dataset_or_dir, (str, os.PathLike)):
        raise HubUsageError(
            f"expected a datasets.Dataset, a DatasetDict or a build directory, got {type(dataset_or_dir).__name__}."
        )
    from realign_data.building.output import open_built

    ds_dir = find_dataset_dir(dataset_or_dir)
    try:  # memory-mapped Arrow, or Parquet read through the datasets cache: never written next to the files
        ds = open_built(ds_dir)
    except Exception as e:
        raise HubUsageError(f"could not open the saved dataset in {str(ds_dir)!r}: {e}") from e
    return ds, Path(dataset_or_dir)


def _resolve_token(token: Optional[str]) -> str:
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubPushError(
            "no Hugging Face token found: run `hf auth login` (or set HF_TOKEN, or pass --token) "
            "with a token that has write access, then run the same command again."
        )
    return token


def push_to_hub(*args: Any, timeout: Optional[float] = HUB_TIMEOUT, **kwargs: Any) -> PushResult:
    """Push a Re-Align dataset and its provenance to the Hub and write/merge its dataset card; every Hub request
    gets ``timeout`` seconds per step (connect, send, each read: :func:`~realign_data.runtime.hub_deadline.hub_deadline`),
    and one that runs past it is a :class:`HubPushError` saying so. The other arguments: :func:`_push_to_hub`."""
    with hub_deadline(timeout):
        return _push_to_hub(*args, **kwargs)


def _push_to_hub(
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
    try:
        if root is not None:
            prov = read_provenance(
                root, build_config=build_config, build_report=build_report, index_manifest=index_manifest
            )
        else:
            prov = Provenance(
                config=to_dict(build_config), report=to_dict(build_report), manifest=to_dict(index_manifest)
            )
            fill_notes(prov)
    except ProvenanceError as e:
        raise HubUsageError(str(e)) from None
    prov.config, prov.report, prov.manifest = (
        redact_tree(prov.config),
        redact_tree(prov.report),  # nothing secret
        redact_tree(prov.manifest),
    )  # is published
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
                repo_id,
                config_name=config_name,
                split=split_name,
                data_dir=data_dir,
                private=private,
                token=token,
                revision=revision,
                max_shard_size=max_shard_size,
                num_shards=num_shards,
                commit_message=commit_message or f"realign: upload {config_name}/{split_name} ({len(part)} pairs)",
            )
        files, card_commit = _push_card_and_provenance(
            api,
            repo_id,
            revision=revision,
            parent=commit.oid if commit else None,
            config_name=config_name,
            data_dir=data_dir,
            prov=prov,
            columns=columns,
            license=license,
            pretty_name=pretty_name,
            num_examples=sum(len(p) for p in parts.values()),
            commit_message=commit_message,
        )
    except (HubUsageError, HubPushError):
        raise
    except Exception as e:  # noqa: BLE001 - every Hub-side failure becomes one clear message
        raise explain_hub_error(e, repo_id) from None
    return PushResult(
        repo_id=repo_id,
        url=str(url),
        config_name=config_name,
        splits={k: len(v) for k, v in parts.items()},
        data_dir=data_dir,
        commit_oid=card_commit or (commit.oid if commit else None),
        files=files,
        revision=revision or "main",
    )


def _download_json(api, repo_id: str, path: str, revision: str, cache_dir: str) -> Optional[dict]:
    from huggingface_hub.errors import EntryNotFoundError

    try:
        local = api.hf_hub_download(repo_id, path, repo_type="dataset", revision=revision, cache_dir=cache_dir)
    except EntryNotFoundError:
        return None
    return read_json(Path(local))


def _download_text(api, repo_id: str, path: str, revision: str, cache_dir: str) -> Optional[str]:
    from huggingface_hub.errors import EntryNotFoundError

    try:
        local = api.hf_hub_download(repo_id, path, repo_type="dataset", revision=revision, cache_dir=cache_dir)
    except EntryNotFoundError:
        return None
    return Path(local).read_text(encoding="utf-8")


def _push_card_and_provenance(
    api,
    repo_id: str,
    *,
    revision: Optional[str],
    parent: Optional[str],
    config_name: str,
    data_dir: str,
    prov: Provenance,
    columns: list[str],
    license: Optional[str],
    pretty_name: Optional[str],
    num_examples: int,
    commit_message: Optional[str],
) -> tuple[list[str], Optional[str]]:
    """Second commit: provenance JSON next to the data + the merged card.

    The commit names its parent; when another commit lands first (HTTP 409/412) the card is read again and the
    commit retried, with jittered exponential backoff, up to :data:`COMMIT_ATTEMPTS` times.
    """
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

    uploads: dict[str, dict] = {
        f"{data_dir}/{name}": obj
        for name, obj in ((CONFIG_FILE, prov.config), (REPORT_FILE, prov.report), (INDEX_MANIFEST_FILE, prov.manifest))
        if obj is not None
    }
    ops = [
        CommitOperationAdd(
            path_in_repo=p, path_or_fileobj=(json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        )
        for p, obj in uploads.items()
    ]

    def commit(state) -> str:
        # the first attempt builds on the data commit; a retry on the branch head as it is now
        head = (
            parent
            if state.attempt_number == 1 and parent
            else api.repo_info(repo_id, repo_type="dataset", revision=revision).sha
        )
        readme = redact_text(
            _merged_readme(
                api,
                repo_id,
                head,
                config_name,
                prov,
                columns=columns,
                license=license,
                pretty_name=pretty_name,
                num_examples=num_examples,
            )
        )
        info = api.create_commit(
            repo_id,
            operations=ops + [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme.encode("utf-8"))],
            repo_type="dataset",
            revision=revision,
            parent_commit=head,
            commit_message=(commit_message + " (card)")
            if commit_message
            else f"realign: dataset card and build provenance for config {config_name}",
        )
        return info.oid

    def conflict(e: BaseException) -> bool:
        return isinstance(e, HfHubHTTPError) and e.response is not None and e.response.status_code in (409, 412)

    for attempt in Retrying(
        retry=retry_if_exception(conflict),
        stop=stop_after_attempt(COMMIT_ATTEMPTS),
        wait=wait_exponential_jitter(initial=0.5, max=8),
        reraise=True,
    ):
        with attempt:
            oid = commit(attempt.retry_state)
    return list(uploads), oid


def _merged_readme(api, repo_id: str, head: str, config_name: str, prov: Provenance, **card) -> str:
    """The card at ``head`` merged with ours; the other configs' provenance is read from their data folders."""
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    with tempfile.TemporaryDirectory(prefix="realign-hub-") as cache:
        readme = _download_text(api, repo_id, "README.md", head, cache)
        card_data = DatasetCard(readme or "---\n---\n", ignore_metadata_errors=True).data
        provenance: dict[str, Optional[Provenance]] = {config_name: prov}
        for name, entry in MetadataConfigs.from_dataset_card_data(card_data).items():
            other_dir = data_dir_of(entry)
            if name == config_name or not other_dir:
                provenance.setdefault(name, None)
                continue
            other = Provenance(
                *(
                    _download_json(api, repo_id, f"{other_dir}/{f}", head, cache)
                    for f in (CONFIG_FILE, REPORT_FILE, INDEX_MANIFEST_FILE)
                )
            )
            provenance[name] = other if (other.config or other.report or other.manifest) else None
    return merge_card(readme, repo_id=repo_id, provenance=provenance, **card)
