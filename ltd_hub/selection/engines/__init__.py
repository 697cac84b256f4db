"""Selection engines for pools larger than memory: bounded local selection and Ray.

``ENGINES`` names the values of ``select_subset(engine=...)`` / ``--engine``:

* ``local`` (default): one process. The embeddings are memory-mapped from the cache, row
  distances and per-cluster picking run in chunks (see :mod:`ltd_hub.selection.engines.bounded`). With
  ``kmeans_sample=None`` k-means is fitted on every row, exactly as before (same ids); with
  ``kmeans_sample=N`` it is fitted on a seeded sample of ``N`` rows per cluster and the rows are
  assigned in chunks, so memory no longer grows with the vectors of the whole pool.
* ``ray``: the same selection on a Ray cluster (see :mod:`ltd_hub.selection.engines.ray_engine`): the
  source read and filtered by Ray Data (:mod:`ltd_hub.selection.engines.ray_source`), encoding
  in an actor pool writing embedding shards, assignment with ``map_batches``, each cluster's
  picking an independent task. The same seed and options give the same ids as ``local``.
"""

from __future__ import annotations

ENGINES = ("local", "ray")
DEFAULT_ENGINE = "local"
# Rows per cluster of the k-means sample that ``--kmeans-sample`` suggests (and the benchmark uses).
SUGGESTED_KMEANS_SAMPLE = 256
