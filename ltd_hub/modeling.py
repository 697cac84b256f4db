"""Loading the base model and its tokenizer, and the prompt format: shared by training, evaluation,
adapters and (through :mod:`ltd_hub.space.ltd_scoring`, which ships inside the Space) the Space.

Downloads go through the Hub gateway's retries; a missing or unloadable model is one
:class:`~ltd_hub.errors.UsageError` line naming ``base_model``.
"""

from __future__ import annotations

from typing import Any

from ltd_hub.errors import HubError, MissingRepoError, UsageError
from ltd_hub.space.ltd_scoring import FormatError, PromptFormatter

__all__ = ["FormatError", "PromptFormatter", "bf16_supported", "load_base_model", "load_tokenizer", "short_error"]


def bf16_supported() -> bool:
    """Whether this machine runs bf16 natively (CUDA with bf16, or a CPU with AVX512-BF16/AMX)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.backends.cpu
    capability = cpu.get_cpu_capability() if hasattr(cpu, "get_cpu_capability") else ""
    native = (
        getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    )
    return bool(native) or capability == "AMX"


def load_tokenizer(model_id: str, *, token: str | None = None) -> Any:
    """Load the base model's tokenizer; a missing model is a one-line UsageError."""
    from transformers import AutoTokenizer

    from ltd_hub.hub import gateway as hub

    try:
        # Downloads cut by the network or a failing Hub are retried; in the end they say to re-run.
        tokenizer = hub.load_pretrained(AutoTokenizer, model_id, what=f"downloading base model {model_id}", token=token)
    except MissingRepoError:
        raise UsageError(f"base model {model_id!r} not found on the Hub (or not visible with this token); check --base-model") from None
    except HubError:
        raise
    except Exception as exc:  # noqa: BLE001 - not found, gated, not a model: one line for the user
        raise UsageError(f"base model {model_id!r} not found or has no tokenizer ({short_error(exc)}); check --base-model") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(
    model_id: str, *, bf16: bool, attn_implementation: str = "sdpa", token: str | None = None, training: bool = False
) -> Any:
    """Load the base causal LM in bf16 or fp32; a missing model is a one-line UsageError.

    With ``training`` the KV cache is switched off: transformers only isolates the rows of a
    padding-free (flattened) batch when no cache is built, otherwise rows attend to each other.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from ltd_hub.hub import gateway as hub

    try:
        # Downloads cut by the network or a failing Hub are retried; in the end they say to re-run.
        model = hub.load_pretrained(
            AutoModelForCausalLM,
            model_id,
            what=f"downloading base model {model_id}",
            dtype=torch.bfloat16 if bf16 else torch.float32,
            attn_implementation=attn_implementation,
            token=token,
        )
    except MissingRepoError:
        raise UsageError(f"base model {model_id!r} not found on the Hub (or not visible with this token); check --base-model") from None
    except HubError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"base model {model_id!r} could not be loaded ({short_error(exc)}); check --base-model") from None
    if training:
        model.config.use_cache = False
    return model


def short_error(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
