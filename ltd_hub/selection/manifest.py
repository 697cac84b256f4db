"""The selection manifest: everything needed to rebuild a subset exactly (``selection_manifest.json``).

It records the source (Hub id + commit sha, or local files + sha256), the filter, the text
fields, the encoder id + revision, k, the seed, the strategy, the ratio, every selected row
with its cluster and distance, and the library versions. It holds no timestamps or timings,
so pushing the same selection twice produces the same file (and no new commit).
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ltd_hub.errors import UsageError

MANIFEST_FILENAME = "selection_manifest.json"
FORMAT_VERSION = 1
_VERSIONED_PACKAGES = (
    "ltd-hub",
    "numpy",
    "scikit-learn",
    "datasets",
    "pyarrow",
    "huggingface_hub",
    "sentence-transformers",
    "transformers",
    "torch",
)
_REQUIRED = ("source", "filter", "columns", "text_fields", "encoder", "selection", "selected")


@dataclass
class SelectedRow:
    """One selected row: its position in the source, its id column value, cluster and distance,
    and a short sha256 of its content (all columns) so a rebuild can check the published rows."""

    row: int
    cluster: int
    distance: float
    id: str | None = None
    sha: str | None = None


def library_versions() -> dict[str, str | None]:
    """Versions of Python and of the libraries that influence a selection."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


# Fields a rebuild reads, with the JSON types they may hold (None: may be null). Keys not listed are not checked.
_FIELD_TYPES: dict[str, tuple[type | None, ...]] = {
    "source": (dict,),
    "source.kind": (str,),
    "source.id": (str,),
    "source.revision": (str, None),
    "source.config": (str, None),
    "source.split": (str, None),
    "source.files": (list, None),
    "filter": (dict,),
    "filter.filters": (list,),
    "filter.tasks": (list, None),
    "filter.task_column": (str, None),
    "columns": (dict,),
    "columns.inputs": (list,),
    "columns.target": (str, None),
    "columns.task": (str, None),
    "text_fields": (list,),
    "encoder": (dict,),
    "encoder.name": (str,),
    "encoder.revision": (str, None),
    "encoder.params": (dict, None),
    "selection": (dict,),
    "selection.strategy": (str,),
    "selection.ratio": (float, int, None),
    "selection.size": (int, None),
    "selection.seed": (int,),
    "selection.n_clusters": (int, None),
    "selection.n_clusters_auto": (bool, None),
    "selection.kmeans_sample": (int, None),
    "selection.engine": (str, None),
    "selected": (list,),
    "versions": (dict,),
    "format_version": (int,),
}
_FIELD_REQUIRED = ("source.kind", "source.id", "encoder.name", "encoder.revision", "selection.strategy", "selection.seed")
_STRING_LISTS = ("text_fields", "columns.inputs", "filter.filters", "filter.tasks")
_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _check_fields(data: dict[str, Any], where: str) -> None:
    """Raise one UsageError naming ``where`` and the first field that is missing or of the wrong type."""
    fix = "re-create the subset with push-subset, or restore the file"
    missing = object()

    def get(dotted: str) -> Any:
        value: Any = data
        for part in dotted.split("."):
            value = value.get(part, missing) if isinstance(value, dict) else missing
        return value

    def fits(value: Any, types: tuple[type | None, ...]) -> bool:
        if value is None:
            return None in types
        if isinstance(value, bool):  # JSON true is no integer here
            return bool in types
        return isinstance(value, tuple(t for t in types if t is not None))

    for dotted, types in _FIELD_TYPES.items():
        value = get(dotted)
        if value is missing:
            if dotted in _FIELD_REQUIRED:
                raise UsageError(f"{where}: field '{dotted}' is missing; {fix}")
            continue
        if not fits(value, types):
            wanted = " or ".join("null" if t is None else _TYPE_NAMES[t] for t in types)
            raise UsageError(f"{where}: field '{dotted}' is {json.dumps(value)[:40]}, expected {wanted}; {fix}")
    for dotted in _STRING_LISTS:
        value = get(dotted)
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise UsageError(f"{where}: field '{dotted}' must be a list of strings; {fix}")
    sel, src = data["selection"], data["source"]
    if sel.get("ratio") is None and sel.get("size") is None:
        raise UsageError(f"{where}: field 'selection.ratio' or 'selection.size' must be set; {fix}")
    if src["kind"] == "hub" and not src.get("revision"):
        raise UsageError(f"{where}: field 'source.revision' is missing (a Hub source needs its commit); {fix}")
    for i, rec in enumerate(src.get("files") or []):
        if not (isinstance(rec, dict) and isinstance(rec.get("path"), str) and isinstance(rec.get("sha256"), str)):
            raise UsageError(f"{where}: field 'source.files[{i}]' needs a 'path' and a 'sha256' string; {fix}")


@dataclass
class SelectionManifest:
    """The rebuild recipe of a subset.

    Attributes:
        source: ``kind``, ``id``, ``revision``, ``config``, ``split``, ``files`` ([{path, sha256, size}]),
            ``fingerprint``, ``n_rows``.
        filter: ``filters`` (["COLUMN=GLOB"]), ``tasks``, ``task_column``, ``n_rows`` (after filtering).
        columns: ``inputs``, ``target``, ``task``, ``id`` column names.
        text_fields: the columns joined (by newlines) into the embedded text.
        encoder: ``name``, ``id``, ``revision``, ``max_tokens``, ``params``, ``dim``, ``n_truncated``.
        selection: ``strategy``, ``ratio``, ``size``, ``n_selected``, ``seed``, ``group_by``,
            ``n_groups``, ``template_column``, ``stratify_by``, ``strata``, ``stratum_budget``,
            ``n_clusters``, ``n_clusters_auto``, ``algorithm``, ``inertia``, ``cluster_sizes``,
            ``cluster_budget``. With ``group_by`` the clusters, sizes and budgets count examples.
        selected: the selected rows, in source order.
        versions: library versions at selection time.
        quality: the quality report (figures of the subset and of a random subset of the same size).
    """

    source: dict[str, Any]
    filter: dict[str, Any]
    columns: dict[str, Any]
    text_fields: list[str]
    encoder: dict[str, Any]
    selection: dict[str, Any]
    selected: list[SelectedRow]
    versions: dict[str, str | None] = field(default_factory=library_versions)
    quality: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    tool: str = "ltd-hub"

    @property
    def row_indices(self) -> list[int]:
        """Source row positions of the selected rows."""
        return [r.row for r in self.selected]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # Columnar rows would be smaller, but one object per row is what a reader scans for.
        data["selected"] = [{k: v for k, v in asdict(r).items() if not (k in ("id", "sha") and v is None)} for r in self.selected]
        return {"format_version": data.pop("format_version"), "tool": data.pop("tool"), **data}

    def to_json(self) -> str:
        """Stable JSON (same selection, same text)."""
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "the selection manifest") -> SelectionManifest:
        """Build a manifest from its JSON object; ``where`` (the file) is named in errors.

        Raises:
            UsageError: a missing field or one of the wrong type, named with its dotted path.
        """
        if not isinstance(data, dict):
            raise UsageError(f"{where} is not a JSON object; it was not written by ltd-hub")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise UsageError(f"{where} lacks {', '.join(missing)}; it was not written by ltd-hub push-subset")
        version = data.get("format_version", FORMAT_VERSION)
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise UsageError(f"{where} has format {version}, newer than this ltd-hub reads ({FORMAT_VERSION}); upgrade ltd-hub")
        _check_fields(data, where)
        try:
            selected = [
                SelectedRow(row=int(r["row"]), cluster=int(r["cluster"]), distance=float(r["distance"]), id=r.get("id"), sha=r.get("sha"))
                for r in data["selected"]
            ]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UsageError(f"{where} has a malformed 'selected' entry ({exc}); re-create the subset") from None
        return cls(
            source=data["source"],
            filter=data["filter"],
            columns=data["columns"],
            text_fields=list(data["text_fields"]),
            encoder=data["encoder"],
            selection=data["selection"],
            selected=selected,
            versions=data.get("versions", {}),
            quality=data.get("quality") or {},
            format_version=data.get("format_version", FORMAT_VERSION),
            tool=data.get("tool", "ltd-hub"),
        )

    @classmethod
    def from_json(cls, text: str, *, where: str = "the selection manifest") -> SelectionManifest:
        """Parse manifest JSON.

        Raises:
            UsageError: not JSON, or not a manifest.

        Example:
            >>> m = SelectionManifest.from_json(Path("selection_manifest.json").read_text())
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where} is not valid JSON ({exc}); re-create the subset") from None
        return cls.from_dict(data, where=where)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> SelectionManifest:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"no selection manifest at {path}; point at a subset folder or repo made by push-subset")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not UTF-8 text; re-create the subset, or restore the file") from None
        return cls.from_json(text, where=str(path))
