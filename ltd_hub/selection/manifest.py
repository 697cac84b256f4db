"""The selection manifest: everything needed to rebuild a subset exactly (``selection_manifest.json``).

It records the source (Hub id + commit sha, or local files + sha256), the filter, the text
fields, the encoder id + revision, k, the seed, the strategy, the ratio, every selected row
with its cluster and distance, and the library versions. It holds no timestamps or timings,
so pushing the same selection twice produces the same file (and no new commit).
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltd_hub.errors import UsageError
from ltd_hub.files import atomic_write

if TYPE_CHECKING:  # quality.py computes with numpy; `ltd-hub --help` reaches this module through training
    from ltd_hub.selection.quality import QualityReport

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


@dataclass(frozen=True)
class ColumnMap:
    """Which columns hold the prompt parts, the target, the task name and a row id."""

    inputs: tuple[str, ...]
    target: str | None
    task: str | None = None
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": list(self.inputs), "target": self.target, "task": self.task, "id": self.id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnMap:
        """The mapping as a manifest records it (``inputs`` may be one name; missing keys are None)."""
        inputs = data.get("inputs") or ()
        return cls(
            inputs=(inputs,) if isinstance(inputs, str) else tuple(inputs),
            target=data.get("target"),
            task=data.get("task"),
            id=data.get("id"),
        )


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


class _Record:
    """A manifest section: a dataclass written as one JSON object, its keys in field order.

    Keys a reader does not know (written by a later ltd-hub of the same format) are kept in
    ``extra`` and written back after the known ones, so reading and writing loses nothing.
    """

    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "extra"}  # type: ignore[arg-type]
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)} - {"extra"}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names}, extra={k: v for k, v in data.items() if k not in names})


def _plain(value: Any) -> Any:
    return value.to_dict() if hasattr(value, "to_dict") else value


@dataclass(kw_only=True)
class SourceRecord(_Record):
    """Where the rows came from: ``kind`` (``files``, ``superni`` or ``hub``), the public ``id``, the
    Hub ``revision``/``config``/``split``, the local ``files`` ([{path, name, sha256, size}]), the
    ``fingerprint`` that changes whenever the data can have changed, and the source's ``n_rows``."""

    kind: str
    id: str
    revision: str | None = None
    config: str | None = None
    split: str | None = None
    files: list[dict[str, Any]] | None = None
    fingerprint: str | None = None
    n_rows: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class FilterRecord(_Record):
    """The rows kept: ``filters`` (["COLUMN=GLOB"]), ``tasks`` on ``task_column``, and ``n_rows`` after filtering."""

    filters: list[str] = field(default_factory=list)
    tasks: list[str] | None = None
    task_column: str | None = None
    n_rows: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class EncoderRecord(_Record):
    """The encoder: registry ``name``, model ``id`` and pinned ``revision``, ``max_tokens``, the ``params``
    that change the embeddings, the embedding ``dim`` and how many texts were truncated (``n_truncated``)."""

    name: str
    id: str | None = None
    revision: str | None = None
    max_tokens: int | None = None
    params: dict[str, Any] | None = None
    dim: int | None = None
    n_truncated: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class SelectionRecord(_Record):
    """The selection's parameters and outcome (see :func:`~ltd_hub.selection.subset.select_subset`).

    With ``group_by`` the clusters, sizes and budgets count examples. ``kmeans_sample`` (with the
    rows it drew) and ``engine`` are written only when set, so that a default selection's
    manifest stays byte-identical to one written before they existed.
    """

    strategy: str
    ratio: float | None = None
    size: int | None = None
    n_selected: int | None = None
    seed: int = 0
    group_by: str | None = None
    n_groups: int | None = None
    template_column: str | None = None
    stratify_by: list[str] | None = None
    strata: list[str] | None = None
    stratum_budget: list[list[int]] | None = None
    n_clusters: int | None = None
    n_clusters_auto: bool | None = None
    algorithm: str | None = None
    inertia: float | None = None
    cluster_sizes: list[int] | None = None
    cluster_budget: list[int] | None = None
    kmeans_sample: int | None = None
    kmeans_sample_rows: int | None = None
    engine: str | None = None  # None: the local engine
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.kmeans_sample is None:
            data.pop("kmeans_sample")
            data.pop("kmeans_sample_rows")
        if self.engine is None:
            data.pop("engine")
        return data


_SECTIONS: dict[str, Any] = {"source": SourceRecord, "filter": FilterRecord, "encoder": EncoderRecord, "selection": SelectionRecord}


@dataclass
class SelectionManifest:
    """The rebuild recipe of a subset.

    Attributes:
        source: where the rows came from (:class:`SourceRecord`).
        filter: which rows were kept (:class:`FilterRecord`).
        columns: the prompt, target, task and id columns (:class:`ColumnMap`).
        text_fields: the columns joined (by newlines) into the embedded text.
        encoder: the encoder and its embeddings (:class:`EncoderRecord`).
        selection: the selection's parameters and outcome (:class:`SelectionRecord`).
        selected: the selected rows, in source order.
        versions: library versions at selection time.
        quality: the quality report (figures of the subset and of a random subset of the same size), if any.

    A section given as a plain dict (as read from JSON) is converted to its type.
    """

    source: SourceRecord
    filter: FilterRecord
    columns: ColumnMap
    text_fields: list[str]
    encoder: EncoderRecord
    selection: SelectionRecord
    selected: list[SelectedRow]
    versions: dict[str, str | None] = field(default_factory=library_versions)
    quality: QualityReport | None = None
    format_version: int = FORMAT_VERSION
    tool: str = "ltd-hub"

    def __post_init__(self) -> None:
        for name, record in _SECTIONS.items():
            if isinstance(getattr(self, name), dict):
                setattr(self, name, record.from_dict(getattr(self, name)))
        if isinstance(self.columns, dict):
            self.columns = ColumnMap.from_dict(self.columns)
        if isinstance(self.quality, dict):
            from ltd_hub.selection.quality import QualityReport

            self.quality = QualityReport.from_dict(self.quality) if self.quality else None

    @property
    def row_indices(self) -> list[int]:
        """Source row positions of the selected rows."""
        return [r.row for r in self.selected]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``selection_manifest.json`` (``format_version`` and ``tool`` first)."""
        return {
            "format_version": self.format_version,
            "tool": self.tool,
            "source": self.source.to_dict(),
            "filter": self.filter.to_dict(),
            "columns": self.columns.to_dict(),
            "text_fields": list(self.text_fields),
            "encoder": self.encoder.to_dict(),
            "selection": self.selection.to_dict(),
            # Columnar rows would be smaller, but one object per row is what a reader scans for.
            "selected": [{k: v for k, v in asdict(r).items() if not (k in ("id", "sha") and v is None)} for r in self.selected],
            "versions": self.versions,
            "quality": self.quality.to_dict() if self.quality else {},
        }

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
            source=SourceRecord.from_dict(data["source"]),
            filter=FilterRecord.from_dict(data["filter"]),
            columns=ColumnMap.from_dict(data["columns"]),
            text_fields=list(data["text_fields"]),
            encoder=EncoderRecord.from_dict(data["encoder"]),
            selection=SelectionRecord.from_dict(data["selection"]),
            selected=selected,
            versions=data.get("versions", {}),
            quality=data.get("quality") or None,  # typed by __post_init__
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
        """Write the manifest to ``path`` (atomically: a reader sees the old file or the new one)."""
        return atomic_write(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> SelectionManifest:
        """Read a manifest file; a missing, non-UTF-8 or malformed one is one :class:`UsageError` naming it."""
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"no selection manifest at {path}; point at a subset folder or repo made by push-subset")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not UTF-8 text; re-create the subset, or restore the file") from None
        return cls.from_json(text, where=str(path))
