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
    """One selected row: its position in the source, its id column value, cluster and distance."""

    row: int
    cluster: int
    distance: float
    id: str | None = None


def library_versions() -> dict[str, str | None]:
    """Versions of Python and of the libraries that influence a selection."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


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
        selection: ``strategy``, ``ratio``, ``size``, ``n_selected``, ``seed``, ``n_clusters``,
            ``n_clusters_auto``, ``algorithm``, ``inertia``, ``cluster_sizes``, ``cluster_budget``.
        selected: the selected rows, in source order.
        versions: library versions at selection time.
    """

    source: dict[str, Any]
    filter: dict[str, Any]
    columns: dict[str, Any]
    text_fields: list[str]
    encoder: dict[str, Any]
    selection: dict[str, Any]
    selected: list[SelectedRow]
    versions: dict[str, str | None] = field(default_factory=library_versions)
    format_version: int = FORMAT_VERSION
    tool: str = "ltd-hub"

    @property
    def row_indices(self) -> list[int]:
        """Source row positions of the selected rows."""
        return [r.row for r in self.selected]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # Columnar rows would be smaller, but one object per row is what a reader scans for.
        data["selected"] = [{k: v for k, v in asdict(r).items() if not (k == "id" and v is None)} for r in self.selected]
        return {"format_version": data.pop("format_version"), "tool": data.pop("tool"), **data}

    def to_json(self) -> str:
        """Stable JSON (same selection, same text)."""
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelectionManifest:
        if not isinstance(data, dict):
            raise UsageError("the selection manifest is not a JSON object; it was not written by ltd-hub")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise UsageError(f"the selection manifest lacks {', '.join(missing)}; it was not written by ltd-hub push-subset")
        if data.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise UsageError(
                f"the selection manifest has format {data['format_version']}, newer than this ltd-hub reads ({FORMAT_VERSION}); upgrade ltd-hub"
            )
        try:
            selected = [
                SelectedRow(row=int(r["row"]), cluster=int(r["cluster"]), distance=float(r["distance"]), id=r.get("id"))
                for r in data["selected"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"the selection manifest has a malformed 'selected' entry ({exc}); re-create the subset") from None
        return cls(
            source=data["source"],
            filter=data["filter"],
            columns=data["columns"],
            text_fields=list(data["text_fields"]),
            encoder=data["encoder"],
            selection=data["selection"],
            selected=selected,
            versions=data.get("versions", {}),
            format_version=data.get("format_version", FORMAT_VERSION),
            tool=data.get("tool", "ltd-hub"),
        )

    @classmethod
    def from_json(cls, text: str) -> SelectionManifest:
        """Parse manifest JSON.

        Raises:
            UsageError: not JSON, or not a manifest.

        Example:
            >>> m = SelectionManifest.from_json(Path("selection_manifest.json").read_text())
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"the selection manifest is not valid JSON ({exc}); re-create the subset") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> SelectionManifest:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"no selection manifest at {path}; point at a subset folder or repo made by push-subset")
        return cls.from_json(path.read_text(encoding="utf-8"))
