"""Examples, not rows: selection over groups of templated copies, then one row per chosen example.

P3/FLAN-style pools render each source example under many prompt templates (the NLI pool: 25
rows per SNLI pair, keyed by ``source``). Selecting rows treats the copies as distinct points and
spends the budget on repeats, so the selection runs over examples instead: an example's vector
is the normalised mean of its rows' vectors, and each chosen example then contributes one row,
with the template chosen (seeded) so that the subset's template mix follows the pool's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ltd_hub.errors import UsageError

# A column whose values repeat this often on average looks like an example key (a group hint)...
GROUP_HINT_MIN_REPEAT = 2.0
# ...unless they repeat so often that it is a category (a task or template name), not an example.
GROUP_HINT_MAX_REPEAT = 200.0


@dataclass
class Groups:
    """Rows partitioned into examples.

    Attributes:
        codes: group id of every row, ``0 … n_groups-1`` in order of first appearance.
        n_groups: number of distinct examples.
        order: row positions sorted by group (stable), and ``bounds`` so that the rows of group g
            are ``order[bounds[g]:bounds[g + 1]]``.
    """

    codes: np.ndarray
    n_groups: int
    order: np.ndarray
    bounds: np.ndarray

    @classmethod
    def from_codes(cls, codes: np.ndarray) -> Groups:
        """The partition given by a group id per row (ids ``0..n_groups-1``)."""
        codes = np.asarray(codes, dtype=np.int64)
        n_groups = int(codes.max()) + 1 if codes.size else 0
        order = np.argsort(codes, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=n_groups))])
        return cls(codes=codes, n_groups=n_groups, order=order, bounds=bounds)

    def rows_of(self, group: int) -> np.ndarray:
        """Row positions of ``group``, ascending."""
        return self.order[self.bounds[group] : self.bounds[group + 1]]

    @property
    def sizes(self) -> np.ndarray:
        """Rows per group."""
        return np.diff(self.bounds)


def encode_values(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Integer codes for ``values`` in order of first appearance, and the distinct values.

    Lists (e.g. ``answer_choices``) are compared by content.

    Example:
        >>> encode_values(["b", "a", "b"])[0].tolist()
        [0, 1, 0]
    """
    return encode_chunks([values], len(values))


def encode_chunks(chunks: Iterable[Sequence[Any]], n_rows: int, *, max_distinct: int | None = None) -> tuple[np.ndarray, list[Any]] | None:
    """:func:`encode_values` over values that arrive a chunk of rows at a time: the same codes,
    while only one chunk's values (and the distinct ones) are ever held as Python objects.

    With ``max_distinct``, returns None as soon as the values take more distinct values than that
    (free text is not a category: stop before holding every text).

    Example:
        >>> encode_chunks([["b", "a"], ["b"]], 3)[0].tolist()
        [0, 1, 0]
    """
    seen: dict[Any, int] = {}
    codes = np.empty(n_rows, dtype=np.int64)
    pos = 0
    for values in chunks:
        for v in values:
            codes[pos] = seen.setdefault(tuple(v) if isinstance(v, list) else v, len(seen))
            pos += 1
        if max_distinct is not None and len(seen) > max_distinct:
            return None
    if pos != n_rows:
        raise ValueError(f"got {pos} values for {n_rows} rows")
    return codes, list(seen)


def _hash(value: Any) -> int:
    # An int column's values are their own keys: Python hashes -1 and -2 alike.
    if isinstance(value, int) and not isinstance(value, bool) and -(1 << 63) <= value < (1 << 63):
        return value
    return hash(tuple(value) if isinstance(value, list) else value)


def _hashes(chunks: Iterable[Sequence[Any]], n_rows: int) -> np.ndarray:
    """A 64-bit hash of every value (Python's ``hash``: stable within this process), as one array."""
    out = np.empty(n_rows, dtype=np.int64)
    pos = 0
    for values in chunks:
        out[pos : pos + len(values)] = np.fromiter(map(_hash, values), np.int64, len(values))
        pos += len(values)
    if pos != n_rows:
        raise ValueError(f"got {pos} values for {n_rows} rows")
    return out


def hashed_codes(chunks: Iterable[Sequence[Any]], n_rows: int) -> np.ndarray:
    """:func:`encode_values`' codes for keys nearly as many as the rows (exact texts), from a 64-bit
    hash of each key instead of the key: 8 bytes a row instead of every distinct text.

    Two different keys share a code only if their hashes collide (about one chance in 10^6 at
    5 million distinct keys); the codes only count examples in the quality report.
    """
    hashes = _hashes(chunks, n_rows)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))  # first appearance, as encode_values
    return rank[inverse.reshape(-1)]


def count_distinct(chunks: Iterable[Sequence[Any]], n_rows: int) -> int:
    """Distinct values among ``n_rows`` values given in chunks (by 64-bit hash, see :func:`hashed_codes`).

    Raises:
        TypeError: a value is unhashable (a dict).
    """
    return len(np.unique(_hashes(chunks, n_rows)))


def group_codes(chunks: Iterable[Sequence[Any]], n_rows: int, column: str) -> Groups:
    """Group rows that share ``column``'s value (given a chunk of rows at a time).

    Raises:
        UsageError: the column holds nulls (a row without an example key cannot be grouped).
    """
    n_null = 0

    def counted():
        nonlocal n_null
        for values in chunks:
            n_null += sum(v is None for v in values)
            yield values

    codes = encode_chunks(counted(), n_rows)[0]
    if n_null:
        raise UsageError(
            f"group_by column {column!r} is empty in {n_null} rows; fill it (every row needs its example key) or drop {{group_by}}",
            params="group_by",
        )
    return Groups.from_codes(codes)


def group_vectors(X: np.ndarray, groups: Groups) -> np.ndarray:
    """The normalised mean of each group's row vectors, shape (n_groups, d), float32.

    A sparse indicator matrix sums the rows without copying ``X`` in group order.
    """
    from scipy import sparse

    indicator = sparse.csr_matrix(
        (np.ones(len(groups.codes), dtype=np.float32), (groups.codes, np.arange(len(groups.codes)))),
        shape=(groups.n_groups, len(groups.codes)),
    )
    sums = np.asarray(indicator @ X, dtype=np.float32)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums / np.maximum(norms, 1e-12)


def group_strata(strata: np.ndarray, groups: Groups) -> np.ndarray:
    """The stratum of each group: the most common stratum among its rows (ties: the lower id).

    Templated copies of one example share its label, so for label strata this is exact; for a
    source column an example seen in two sources counts where most of its rows are.
    """
    strata = np.asarray(strata, dtype=np.int64)
    n_strata = int(strata.max()) + 1 if strata.size else 1
    pairs, counts = np.unique(groups.codes * n_strata + strata, return_counts=True)
    g, s = pairs // n_strata, pairs % n_strata
    # Per group: the largest count first, then the lower stratum id; keep the first of each group.
    order = np.lexsort((s, -counts, g))
    first = np.concatenate([[True], g[order][1:] != g[order][:-1]])
    out = np.empty(groups.n_groups, dtype=np.int64)
    out[g[order][first]] = s[order][first]
    return out


def choose_rows(
    chosen: np.ndarray,
    groups: Groups,
    templates: np.ndarray | None,
    seed: int,
    clusters: np.ndarray | None = None,
    strata: np.ndarray | None = None,
) -> np.ndarray:
    """One row per chosen group, with the templates' mix following the pool's.

    Each template gets a target count (its share of the pool's rows times the number of chosen
    groups, largest remainder), within each stratum when ``strata`` are given, so that a label
    rendered differently by different templates keeps its mix too. Groups are then served most constrained first (fewest templates
    on offer, ties in seeded random order), each taking, among the templates it has, one still
    below its target, preferably one not yet used in the group's cluster (so that the examples of
    one cluster come under different templates and cover more of the pool), then the one
    furthest below its target (ties at random); a random row of that template is the pick.
    Without a template column the row is drawn uniformly inside the group.

    Args:
        chosen: group ids, distinct.
        groups: the partition.
        templates: template id of every row (int), or None.
        seed: seeds every random choice.
        clusters: the cluster of each chosen group (optional).
        strata: the stratum of every group (optional, see :func:`group_strata`).

    Returns:
        Row positions, one per chosen group, in the order of ``chosen``.
    """
    rng = np.random.default_rng(seed)
    chosen = np.asarray(chosen, dtype=np.int64)
    if templates is None:  # a uniform row of each group
        return np.array([rows[rng.integers(len(rows))] for rows in map(groups.rows_of, chosen)], dtype=np.int64)
    picks = np.empty(len(chosen), dtype=np.int64)
    templates = np.asarray(templates, dtype=np.int64)
    group_stratum = np.zeros(groups.n_groups, dtype=np.int64) if strata is None else np.asarray(strata, dtype=np.int64)
    deficit = _template_targets(chosen, groups, templates, group_stratum)
    offers = [templates[groups.rows_of(g)] for g in chosen]
    n_offered = np.array([len(np.unique(t)) for t in offers])
    clusters = np.zeros(len(chosen), dtype=np.int64) if clusters is None else np.asarray(clusters, dtype=np.int64)
    used: dict[int, set[int]] = {}
    for i in np.lexsort((rng.permutation(len(chosen)), n_offered)):
        rows, offered = groups.rows_of(chosen[i]), offers[i]
        options = np.unique(offered)
        stratum_deficit = deficit[group_stratum[chosen[i]]]
        need = stratum_deficit[options]
        seen = used.setdefault(int(clusters[i]), set())
        fresh = np.fromiter((t not in seen for t in options.tolist()), dtype=bool, count=len(options))
        # Lexicographic: below target first, then new to this cluster, then furthest below target.
        score = (need > 0) * (4 * len(chosen)) + fresh * (2 * len(chosen)) + need
        best = options[score == score.max()]
        template = int(best[rng.integers(len(best))])
        candidates = rows[offered == template]
        picks[i] = candidates[rng.integers(len(candidates))]
        stratum_deficit[template] -= 1
        seen.add(template)
    return picks


def _template_targets(chosen: np.ndarray, groups: Groups, templates: np.ndarray, group_stratum: np.ndarray) -> np.ndarray:
    """``deficit[s, t]``: rows of template ``t`` wanted among the chosen groups of stratum ``s`` (the pool's
    template shares of that stratum's rows, largest remainder)."""
    from ltd_hub.selection.budget import _largest_remainder

    n_templates = int(templates.max()) + 1
    n_strata = int(group_stratum.max()) + 1
    pool = np.bincount(group_stratum[groups.codes] * n_templates + templates, minlength=n_strata * n_templates)
    pool = pool.reshape(n_strata, n_templates)
    wanted = np.bincount(group_stratum[chosen], minlength=n_strata)
    return np.stack([_largest_remainder(pool[s], int(wanted[s])) for s in range(n_strata)]).astype(np.int64)


def suggest_group_column(distinct: dict[str, int], n_rows: int) -> tuple[str, float] | None:
    """The column that most looks like an example key, with its mean repeat, or None.

    Args:
        distinct: distinct values per candidate column (see :func:`count_distinct`).
        n_rows: rows in the data.

    A column qualifies when its values repeat, on average, between ``GROUP_HINT_MIN_REPEAT`` and
    ``GROUP_HINT_MAX_REPEAT`` times: more often than a row id, less often than a category.

    Example:
        >>> suggest_group_column({"source": 2, "id": 4}, 4)
        ('source', 2.0)
    """
    best: tuple[str, float] | None = None
    for name, n_distinct in distinct.items():
        repeat = n_rows / max(n_distinct, 1)
        if GROUP_HINT_MIN_REPEAT <= repeat <= GROUP_HINT_MAX_REPEAT and (best is None or repeat > best[1]):
            best = (name, repeat)
    return best
