"""The build configuration (``realign_build.json``) that produced a dataset, to rebuild it: from a local file or
build directory, or from a Hub dataset repo (:func:`load_build_config`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from realign_data.building.output import CONFIG_FILE, dataset_dir
from realign_data.publish.hub_errors import HubPushError, HubUsageError, explain_hub_error
from realign_data.publish.provenance import read_json


def load_build_config(
    path_or_repo: Union[str, os.PathLike],
    *,
    config_name: str = "default",
    revision: Optional[str] = None,
    token: Optional[str] = None,
) -> dict:
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
            found = dataset_dir(local)
            data = next((d for d in (read_json(p / CONFIG_FILE) for p in (local, found) if p) if d is not None), None)
            if data is None:
                raise HubUsageError(f"no {CONFIG_FILE} in directory {text!r}.")
            return data
        data = read_json(local)
        if data is None:
            raise HubUsageError(f"{text!r} is not a JSON object (expected a {CONFIG_FILE}).")
        return data
    if text.endswith(".json") and not text.startswith("hf://"):
        raise HubUsageError(f"build configuration file {text!r} does not exist.")

    paths: list[str]
    if text.startswith("hf://"):
        rest = text[len("hf://") :]
        if rest.startswith("datasets/"):
            rest = rest[len("datasets/") :]
        parts = rest.split("/")
        if len(parts) < 3:
            raise HubUsageError(f"{text!r}: expected hf://datasets/namespace/name/path/to/{CONFIG_FILE}.")
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
        paths = [f"{data_dir}/{CONFIG_FILE}", CONFIG_FILE]

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        for p in paths:
            try:
                local_file = hf_hub_download(repo_id, p, repo_type="dataset", revision=revision, token=token)
            except EntryNotFoundError:
                continue
            data = read_json(Path(local_file))
            if data is None:
                raise HubUsageError(f"{p} in {repo_id} is not a JSON object.")
            return data
    except (HubUsageError, HubPushError):
        raise
    except Exception as e:  # noqa: BLE001
        raise explain_hub_error(e, repo_id, "fetch the build configuration of") from None
    raise HubPushError(
        f"{repo_id} has no {' or '.join(paths)} (HTTP 404): it was not pushed with "
        "`realign-data push`, or the config name is different.",
        status=404,
    )
