"""ltd-hub: Low Training Data instruction tuning on the Hugging Face Hub.

Heavy entry points are imported lazily so that ``import ltd_hub`` and ``ltd-hub --help`` stay fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "serve_hub": "ltd_hub.hub_server.serve",
    "select_subset": "ltd_hub.selection.subset",
    "push_subset": "ltd_hub.selection.subset",
    "rebuild_subset": "ltd_hub.selection.subset",
    "train": "ltd_hub.training",
    "TrainConfig": "ltd_hub.training",
    "Checkpointing": "ltd_hub.checkpoints",
    "evaluate_adapter": "ltd_hub.evaluation.evaluator",
    "load_adapter": "ltd_hub.adapters",
    "push_adapter": "ltd_hub.adapters",
    "push_space": "ltd_hub.spaces.publish",
    "reproduce": "ltd_hub.pipelines.reproduce",
    "ReproduceConfig": "ltd_hub.pipelines.reproduce",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ltd_hub' has no attribute {name!r}")
