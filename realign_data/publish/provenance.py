"""What a build directory says about how it was made: its config, its report and its knowledge base manifest.

The dataset card (:mod:`realign_data.publish.dataset_card`) shows it; the Hub push (:mod:`realign_data.publish.hub`) uploads it
next to the data. Only files the builder writes are read (:data:`realign_data.building.output.CONFIG_FILE`,
:data:`~realign_data.building.output.REPORT_FILE`) and the manifest of the index they name; what is missing becomes a note.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from realign_data.building.output import CONFIG_FILE, REPORT_FILE, dataset_dir


class ProvenanceError(ValueError):
    """A given config / report / manifest cannot be read (not a mapping, not a JSON object)."""


@dataclass
class Provenance:
    """What is known about how one config of the dataset was built (any part may be missing)."""

    config: Optional[dict] = None  # the build configuration (realign_build.json)
    report: Optional[dict] = None  # the build report (build_report.json)
    manifest: Optional[dict] = None  # the knowledge base manifest (index manifest.json)
    license: Optional[str] = None  # licence inferred from the corpus, when known
    notes: list[str] = field(default_factory=list)  # what could not be found, said plainly


def read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def to_dict(obj: Any) -> Optional[dict]:
    if obj is None:
        return None
    if is_dataclass(obj) and not isinstance(obj, type):
        obj = asdict(obj)
    elif hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    elif isinstance(obj, (str, os.PathLike)):
        data = read_json(Path(obj))
        if data is None:
            raise ProvenanceError(f"could not read a JSON object from {str(obj)!r}.")
        obj = data
    if not isinstance(obj, Mapping):
        raise ProvenanceError(f"expected a mapping, a dataclass or a JSON file, got {type(obj).__name__}.")
    return json.loads(json.dumps(dict(obj), default=str))  # JSON-safe copy (Paths, enums -> str)


def _manifest_of(config: Optional[dict], report: Optional[dict]) -> tuple[Optional[dict], Optional[str]]:
    """The knowledge base manifest of a build: the index the config names, else the one the report used."""
    from realign_data.kb.knowledge_base import resolve_index

    used = ((report or {}).get("provenance") or {}).get("knowledge_base") or {}
    named = [(config or {}).get("index"), used.get("path")]
    for value in (v for v in named if isinstance(v, str) and v):
        data = read_json(resolve_index(value, must_exist=False) / "manifest.json")
        if data is not None:
            return data, value
    return None, next((v for v in named if isinstance(v, str) and v), None)


def corpus_license(config: Optional[dict], manifest: Optional[dict]) -> Optional[str]:
    """The licence of the COCO-layout image corpus (its annotations' ``licenses``), as a Hub licence id; else None."""
    source = (manifest or {}).get("source")
    root = (
        source.get("root")
        if isinstance(source, Mapping) and source.get("type") == "coco"
        else (config or {}).get("coco_root")
    )
    if not root:
        return None
    ann = Path(str(root)) / "annotations"
    if not ann.is_dir():
        return None
    names: set[str] = set()
    for f in sorted(ann.glob("*.json")):
        if f.stat().st_size > 32_000_000:  # a real COCO file: too big to parse for a licence
            continue
        data = read_json(f)
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


def read_provenance(
    path: Union[str, os.PathLike], *, build_config: Any = None, build_report: Any = None, index_manifest: Any = None
) -> Provenance:
    """Collect what a build directory says about how it was made. Missing pieces become notes, not errors.

    Reads ``realign_build.json`` and ``build_report.json`` of the build (the dataset folder, or the folder
    holding it) and the manifest of the knowledge base they name. Explicit arguments win.
    """
    root = Path(path).expanduser()
    dirs = [d for d in dict.fromkeys([dataset_dir(root), root]) if d is not None]

    def first(name: str) -> Optional[dict]:
        return next((data for d in dirs if (data := read_json(d / name)) is not None), None)

    prov = Provenance()
    prov.config = to_dict(build_config) if build_config is not None else first(CONFIG_FILE)
    prov.report = to_dict(build_report) if build_report is not None else first(REPORT_FILE)
    if index_manifest is not None:
        prov.manifest = to_dict(index_manifest)
    else:
        prov.manifest, where = _manifest_of(prov.config, prov.report)
        if prov.manifest is None and where:
            prov.notes.append(f"The knowledge base manifest of index {where!r} was not available when pushing.")
    fill_notes(prov)
    return prov


def fill_notes(prov: Provenance) -> None:
    if prov.config is None:
        prov.notes.append(
            f"No build configuration ({CONFIG_FILE}) was found: this config cannot be rebuilt from the card."
        )
    if prov.report is None:
        prov.notes.append(f"No build report ({REPORT_FILE}) was found.")
    if prov.manifest is None and not any("manifest" in n for n in prov.notes):
        prov.notes.append("No knowledge base manifest was found (encoder and index settings unknown).")
    if prov.license is None:
        prov.license = corpus_license(prov.config, prov.manifest)
