"""The Hub gateway: the only code that downloads from or pushes to the Hub, and the cards it writes.

* :mod:`ltd_hub.hub.gateway`: one-commit pushes, retrying reads, visibility rules, typed errors.
* :mod:`ltd_hub.hub.cards`: dataset/model card rendering (``RepoCard`` / ``CardData``).
"""
