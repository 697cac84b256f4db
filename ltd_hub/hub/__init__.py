"""The Hub gateway: the only code that downloads from or pushes to the Hub, and the cards it writes.

* :mod:`ltd_hub.hub.gateway`: one-commit pushes (:class:`~ltd_hub.hub.gateway.PushResult`), retrying reads and
  loaders (``load_pretrained``, ``load_dataset``), visibility rules, typed not-found errors, ``pointed_at`` an endpoint.
* :mod:`ltd_hub.hub.cards`: dataset/model card rendering (``RepoCard`` / ``CardData``).
"""
