"""How a prompt and its answer are turned into tokens, and how answer choices are scored.

One module for both sides of the comparison: ``ltd-hub evaluate`` scores answer choices with
it, and ``ltd-hub push-space`` ships this same file into the Space beside ``app.py``, so the
Space's choice probabilities are the softmax of exactly the scores ``evaluate`` ranks. It imports
only torch and tqdm (both come with transformers), never ltd_hub.

Formatting is the one training uses (:class:`PromptFormatter`): the prompt as the user turn of the
base model's chat template (with the system prompt the adapter was trained with) and the answer
as the rest of the rendered conversation, end-of-turn token included.
"""

from __future__ import annotations

import math
import os
from typing import Any


class FormatError(ValueError):
    """A tokenizer whose chat template cannot be split into prompt + answer."""


class PromptFormatter:
    """Turns (prompt, answer) into token ids exactly as training saw them; evaluation reuses it.

    With a chat template the prompt is the user turn plus the assistant header and the answer is
    the rest of the rendered conversation (answer text, end-of-turn token). Without one, the prompt
    is the text plus a newline and the answer ends with the EOS token.

    Example:
        >>> fmt = PromptFormatter(tokenizer)  # doctest: +SKIP
        >>> prompt_ids, answer_ids = fmt.encode("Premise ... True or False?", "True")  # doctest: +SKIP
    """

    def __init__(self, tokenizer: Any, *, use_chat_template: bool = True, system_prompt: str | None = None):
        self.tokenizer = tokenizer
        self.chat = bool(use_chat_template and getattr(tokenizer, "chat_template", None))
        self.system_prompt = system_prompt

    def _messages(self, prompt: str) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return head + [{"role": "user", "content": prompt}]

    def prompt_text(self, prompt: str) -> str:
        if not self.chat:
            return f"{prompt}\n"
        return self.tokenizer.apply_chat_template(self._messages(prompt), tokenize=False, add_generation_prompt=True)

    def answer_text(self, prompt: str, answer: str) -> str:
        if not self.chat:
            return answer
        head = self.prompt_text(prompt)
        full = self.tokenizer.apply_chat_template(self._messages(prompt) + [{"role": "assistant", "content": answer}], tokenize=False)
        if not full.startswith(head):
            # Templates that rewrite earlier turns (rare) cannot be split into prompt + answer.
            raise FormatError("the base model's chat template does not render the prompt as a prefix; pass --no-use-chat-template")
        return full[len(head) :]

    def encode_batch(self, prompts: list[str], answers: list[str]) -> tuple[list[list[int]], list[list[int]]]:
        tok = self.tokenizer
        prompt_texts = [self.prompt_text(p) for p in prompts]
        answer_texts = [self.answer_text(p, a) for p, a in zip(prompts, answers)]
        # The chat template already holds the special tokens; plain text gets the tokenizer's own (BOS).
        prompt_ids = tok(prompt_texts, add_special_tokens=not self.chat)["input_ids"]
        answer_ids = tok(answer_texts, add_special_tokens=False)["input_ids"]
        if not self.chat and tok.eos_token_id is not None:
            answer_ids = [ids + [tok.eos_token_id] for ids in answer_ids]
        return prompt_ids, answer_ids

    def encode(self, prompt: str, answer: str) -> tuple[list[int], list[int]]:
        prompt_ids, answer_ids = self.encode_batch([prompt], [answer])
        return prompt_ids[0], answer_ids[0]


SCORING_METHODS = ("shared", "separate")


def score_choices(
    model: Any, formatter: Any, rows: list[dict[str, Any]], *, batch_size: int = 16, progress: bool = True, method: str = "shared"
) -> list[list[float]]:
    """Log-likelihood of every answer choice of every row given its prompt.

    Each (prompt, choice) pair is tokenised exactly as training formats it (``formatter``); the
    score is the summed log-probability of the choice's tokens after the prompt's tokens.

    ``method="shared"`` (the default) runs each prompt once and scores all its choices from the
    prompt's KV cache, packed into one sequence; the prefix that every prompt shares (the chat
    template's system turn) runs once for all rows. ``method="separate"`` runs every prompt + choice as its own sequence (the
    original scorer, kept for benchmarks and as the reference the shared one is tested against).
    Both give the same scores up to floating-point rounding.

    Args:
        model: a causal LM (or PEFT model) in eval mode.
        formatter: a :class:`ltd_hub.training.PromptFormatter`.
        rows: eval rows with ``inputs`` and ``choices``.
        batch_size: prompt + choice sequences per forward pass (``shared``: ``batch_size // choices``
            prompts per pass, each with all its choices; fewer prompts per pass also means less padding).
        progress: show a progress bar.
        method: ``"shared"`` or ``"separate"``.

    Returns:
        For each row, one summed log-probability per choice.
    """
    if method not in SCORING_METHODS:
        raise ValueError(f"method must be one of {SCORING_METHODS}, got {method!r}")
    encoded = []  # per row: [(prompt ids, answer ids) per choice]
    for row in rows:
        prompt_ids, answer_ids = formatter.encode_batch([row["inputs"]] * len(row["choices"]), row["choices"])
        encoded.append(list(zip(prompt_ids, answer_ids)))
    pad_id = formatter.tokenizer.pad_token_id
    out: list[list[float]] = [[0.0] * len(pairs) for pairs in encoded]
    # The shared scorer packs a prompt's choices under a custom 4D mask, which the flash/flex kernels do not take.
    if method == "separate" or _attention_implementation(model) not in ("sdpa", "eager"):
        pairs = {(i, j): (p, a) for i, row in enumerate(encoded) for j, (p, a) in enumerate(row)}
        scored = _score_separate(model, pad_id, pairs, batch_size=batch_size, progress=progress)
    else:
        common, shared, leftover = _plan_shared(encoded)
        prompts_per_pass = max(1, batch_size // max((len(s[2]) for s in shared), default=1))
        scored = _score_shared(model, pad_id, common, shared, batch_size=prompts_per_pass, progress=progress)
        if leftover:
            scored.update(_score_separate(model, pad_id, leftover, batch_size=batch_size, progress=False))
    for (i, j), value in scored.items():
        out[i][j] = value
    return out


SharedRow = tuple[int, list[int], list[int], list[list[int]]]  # (row, prompt ids, choice indices, answer ids per choice)


def _plan_shared(
    encoded: list[list[tuple[list[int], list[int]]]],
) -> tuple[list[int], list[SharedRow], dict[tuple[int, int], tuple[list[int], list[int]]]]:
    """Which choices the shared scorer takes, the prefix common to all their prompts, and the leftover pairs.

    A row is scored from one prompt when every choice's prompt tokens are the same; a choice whose
    prompt tokens differ (a formatter that tokenises across the boundary) goes the separate way.
    """
    shared: list[SharedRow] = []
    leftover: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    for i, row in enumerate(encoded):
        prompt = row[0][0]
        same = [j for j, (p, _) in enumerate(row) if p == prompt]
        for j, (p, a) in enumerate(row):
            if j not in same:
                leftover[(i, j)] = (p, a)
        shared.append((i, prompt, same, [row[j][1] for j in same]))
    # The common prefix runs once for all rows; at least the last prompt token stays out of it,
    # because its logits score the first answer token.
    common = list(os.path.commonprefix([prompt for _, prompt, _, _ in shared])) if shared else []
    common = common[: max(min((len(p) for _, p, _, _ in shared), default=1) - 1, 0)]
    if not common:
        # Without a common prefix a one-token prompt would leave its row empty in the prompt pass
        # (a fully masked attention row); such rows are rare and go the separate way.
        for i, prompt, same, answers in [s for s in shared if len(s[1]) < 2]:
            leftover.update({(i, j): (prompt, a) for j, a in zip(same, answers)})
        shared = [s for s in shared if len(s[1]) >= 2]
    return common, shared, leftover


def _score_separate(
    model: Any, pad_id: int, pairs: dict[Any, tuple[list[int], list[int]]], *, batch_size: int, progress: bool
) -> dict[Any, float]:
    """Score each (prompt ids, answer ids) as one sequence (the original scorer).

    Sequences are sorted by length and left-padded, so the answer tokens of a batch all sit at its
    end and only those positions' logits are computed (``logits_to_keep``).
    """
    import torch
    from tqdm.auto import tqdm

    keys = list(pairs)
    seqs = [(pairs[k][0] + pairs[k][1], len(pairs[k][1])) for k in keys]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    scores: dict[Any, float] = {}
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch_size), desc="Scoring choices", disable=not progress, unit="batch"):
            batch = [seqs[i] for i in order[start : start + batch_size]]
            width = max(len(ids) for ids, _ in batch)
            keep = max(a for _, a in batch) + 1
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, (ids, _) in enumerate(batch):
                input_ids[b, width - len(ids) :] = torch.tensor(ids)
                mask[b, width - len(ids) :] = 1
            # Left padding shifts tokens; position ids from the mask keep every row as if unpadded.
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                position_ids=position_ids.to(device),
                logits_to_keep=keep,
            ).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
            targets = input_ids[:, width - keep + 1 :].to(device)
            token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            answer_len = torch.tensor([a for _, a in batch], device=device)
            positions = torch.arange(keep - 1, device=device).unsqueeze(0)
            summed = (token_lp * (positions >= (keep - 1 - answer_len).unsqueeze(1))).sum(-1)
            for b, value in enumerate(summed.tolist()):
                scores[keys[order[start + b]]] = value
    return scores


def _cache_kwarg(model: Any) -> str:
    """The forward argument that takes a KV cache: ``cache`` in newer transformers, ``past_key_values`` before."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _attention_implementation(model: Any) -> str | None:
    return getattr(getattr(model, "config", None), "_attn_implementation", None)


def _cache_of(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return output.past_key_values if cache is None else cache


def _score_shared(
    model: Any, pad_id: int, common: list[int], rows: list[SharedRow], *, batch_size: int, progress: bool
) -> dict[tuple[int, int], float]:
    """Score every choice of each prompt from the prompt's KV cache.

    The ``common`` prefix (every prompt's first tokens: the chat template's system turn) runs once;
    then per batch of prompts (sorted by length) two forward passes:
    1. the rest of each prompt except its last token, right-padded, appended to a copy of the
       common prefix's cache (:func:`_run_prompt_rests`);
    2. per prompt one packed sequence, [last prompt token] + choice 1 + choice 2 + ..., with a 4D
       mask under which each choice's tokens see the prompt and their own earlier tokens only,
       and position ids that restart after the prompt for every choice (:func:`_pack_choices`,
       :func:`_packed_mask`). Its logits score the choices.
    Padding holes are masked out and position ids count real tokens only, so every choice sees
    exactly the sequence the separate scorer runs.
    """
    import copy

    import torch
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda r: len(rows[r][1]))
    scores: dict[tuple[int, int], float] = {}
    with torch.inference_mode():
        common_cache = None
        if common:
            common_cache = _cache_of(model(input_ids=torch.tensor([common], device=device), use_cache=True, logits_to_keep=1))
        for start in tqdm(range(0, len(order), batch_size), desc="Scoring choices", disable=not progress, unit="batch"):
            batch = [rows[r] for r in order[start : start + batch_size]]
            cache = None
            if common_cache is not None:
                cache = copy.deepcopy(common_cache)
                cache.batch_select_indices(torch.zeros(len(batch), dtype=torch.long, device=device))
            cache, rest_mask = _run_prompt_rests(model, pad_id, len(common), batch, cache)
            scores.update(_score_packed(model, pad_id, len(common), batch, cache, rest_mask))
    return scores


def _run_prompt_rests(model: Any, pad_id: int, n_common: int, batch: list[SharedRow], cache: Any) -> tuple[Any, Any]:
    """Pass 1: each prompt after the common prefix, without its last token, into the cache.

    Returns the cache and the mask of the real (not padding) tokens this pass added.
    """
    import torch

    size = len(batch)
    rests = [prompt[n_common:-1] for _, prompt, _, _ in batch]
    width = max(len(r) for r in rests)
    rest_mask = torch.zeros((size, width), dtype=torch.long)
    if not width:
        return cache, rest_mask
    rest_ids = torch.full((size, width), pad_id, dtype=torch.long)
    for b, rest in enumerate(rests):
        rest_ids[b, : len(rest)] = torch.tensor(rest, dtype=torch.long)
        rest_mask[b, : len(rest)] = 1
    device = next(model.parameters()).device
    out = model(
        input_ids=rest_ids.to(device),
        attention_mask=torch.cat([torch.ones((size, n_common), dtype=torch.long), rest_mask], 1).to(device),
        position_ids=(n_common + torch.arange(width)).unsqueeze(0).expand(size, -1).to(device),
        use_cache=True,
        logits_to_keep=1,
        **{_cache_kwarg(model): cache},
    )
    return _cache_of(out), rest_mask


def _pack_choices(pad_id: int, batch: list[SharedRow]) -> tuple[Any, Any, Any, Any]:
    """Pass 2's input: per prompt, [last prompt token] + all its choices in one sequence.

    Returns ``ids``, ``block`` (0: the last prompt token, k: choice k, -1: padding), ``positions``
    (restarting after the prompt for every choice) and ``source`` (which position's logits predict
    each token).
    """
    import torch

    seqs = [[prompt[-1]] + [t for answer in answers for t in answer] for _, prompt, _, answers in batch]
    size, packed = len(batch), max(len(seq) for seq in seqs)
    ids = torch.full((size, packed), pad_id, dtype=torch.long)
    block = torch.full((size, packed), -1, dtype=torch.long)
    positions = torch.zeros((size, packed), dtype=torch.long)
    source = torch.zeros((size, packed), dtype=torch.long)
    for b, (_, prompt, _, answers) in enumerate(batch):
        ids[b, : len(seqs[b])] = torch.tensor(seqs[b], dtype=torch.long)
        block[b, 0], positions[b, 0] = 0, len(prompt) - 1
        at = 1
        for k, answer in enumerate(answers, start=1):
            n = len(answer)
            block[b, at : at + n] = k
            positions[b, at : at + n] = len(prompt) + torch.arange(n)
            source[b, at : at + n] = torch.arange(at - 1, at + n - 1)
            source[b, at] = 0  # a choice's first token is predicted by the last prompt token
            at += n
    return ids, block, positions, source


def _packed_mask(model: Any, block: Any, n_common: int, rest_mask: Any) -> Any:
    """The 4D mask of pass 2: the cached prompt, plus earlier tokens of the same choice (and the last prompt token)."""
    import torch

    size, packed = block.shape
    col = torch.arange(packed)
    sees = (col.view(1, 1, -1) <= col.view(1, -1, 1)) & (
        (block.unsqueeze(2) == block.unsqueeze(1)) | (col == 0).view(1, 1, -1)
    )  # (batch, query, key) among the packed tokens
    prefix = torch.cat([torch.ones((size, n_common), dtype=torch.bool), rest_mask.bool()], 1)
    allowed = torch.cat([prefix.unsqueeze(1).expand(-1, packed, -1), sees], 2).unsqueeze(1)
    if _attention_implementation(model) != "eager":
        return allowed  # sdpa takes a boolean mask (True: attend)
    # eager adds the mask to the attention scores.
    dtype = next(model.parameters()).dtype
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


def _score_packed(
    model: Any, pad_id: int, n_common: int, batch: list[SharedRow], cache: Any, rest_mask: Any
) -> dict[tuple[int, int], float]:
    """Pass 2: the summed log-probability of every choice of the batch's prompts."""
    import torch

    device = next(model.parameters()).device
    ids, block, positions, source = _pack_choices(pad_id, batch)
    size, packed = ids.shape
    logits = model(
        input_ids=ids.to(device),
        attention_mask=_packed_mask(model, block, n_common, rest_mask).to(device),
        position_ids=positions.to(device),
        use_cache=True,
        **{_cache_kwarg(model): cache},
    ).logits.float()
    logprobs = torch.log_softmax(logits, dim=-1)
    rows_idx = torch.arange(size).unsqueeze(1).expand(-1, packed)
    token_lp = logprobs[rows_idx.to(device), source.to(device), ids.to(device)].cpu()
    scores = {}
    for b, (i, _, same, _answers) in enumerate(batch):
        for k, j in enumerate(same, start=1):
            scores[(i, j)] = float(token_lp[b][block[b] == k].sum())
    return scores


def choice_probabilities(scores: list[float]) -> list[float]:
    """Softmax over one row's choice scores (summed log-probabilities): the probability of each choice.

    Example:
        >>> [round(p, 3) for p in choice_probabilities([-1.0, -2.0])]
        [0.731, 0.269]
    """
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    total = sum(weights)
    return [w / total for w in weights]
