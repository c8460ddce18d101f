"""Batched generation under hooks: the one place steering evaluations call ``model.generate``.

Prompts are grouped by their length in tokens, so a batch needs no padding (a left-padded batch
would need an attention mask that TL 2 and TL 4 handle differently, and greedy continuations
would then depend on the batch). Each group runs TransformerLens's own ``generate`` with the KV
cache, under the caller's hooks; continuations are cut at the first end-of-sequence token and
decoded without special tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from lensneurons._checks import hook_list, positive_int
from lensneurons.errors import ContextLengthError, InvalidTextError, ParameterError
from lensneurons.lens._inputs import tokenize
from lensneurons.model import ModelView


def check_prompts(prompts: Any) -> list[str]:
    """``prompts`` as a non-empty list of non-blank strings.

    Raises:
        ParameterError: no prompts, or a bare string instead of a list.
        InvalidTextError: a prompt is not a string, or is empty or whitespace only.
    """
    if isinstance(prompts, str):
        raise ParameterError(
            f"prompts must be a list of strings, got one string {prompts[:40]!r}; wrap it: "
            "[prompt]."
        )
    if not isinstance(prompts, Sequence) or isinstance(prompts, bytes):
        raise ParameterError(f"prompts must be a list of strings, got {type(prompts).__name__}.")
    if not prompts:
        raise ParameterError("No prompts were given; pass at least one prompt.")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InvalidTextError(f"Prompt {i} is {type(prompt).__name__}, not a string.")
        if not prompt.strip():
            raise InvalidTextError(
                f"Prompt {i} is empty or whitespace only; a continuation of nothing is not a "
                "steering test. Remove it or write a prompt."
            )
    return list(prompts)


def generate(
    model: Any,
    prompts: Sequence[str],
    fwd_hooks: Sequence[tuple[Any, Callable[..., Any]]] = (),
    *,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    n_samples: int = 1,
    seed: int = 0,
    batch_size: int = 16,
    stop: Sequence[str] = (),
    progress: bool = False,
    **generate_kwargs: Any,
) -> list[list[str]]:
    """Continuations of every prompt under ``fwd_hooks``: ``[prompt][sample]`` strings.

    Args:
        model: a TransformerLens model.
        prompts: the prompts (checked with :func:`check_prompts`).
        fwd_hooks: hooks active during generation (every step, prompt and new tokens).
        max_new_tokens: tokens generated per continuation (>= 1).
        do_sample: sample instead of greedy decoding.
        n_samples: continuations per prompt (> 1 needs ``do_sample``).
        seed: seeds torch's generator before sampling (the same seed gives the same samples).
        batch_size: sequences per ``generate`` call.
        stop: cut each continuation before the first of these strings (e.g. a newline and
            ``Q:`` when the model would go on to ask itself the next question).
        progress: show a progress bar.
        **generate_kwargs: passed to ``model.generate`` (``temperature``, ``top_p``,
            ``repetition_penalty`` ...).

    Raises:
        ParameterError: ``max_new_tokens`` or ``n_samples`` below 1, ``n_samples > 1`` with
            greedy decoding, or malformed hooks.
        ContextLengthError: a prompt plus ``max_new_tokens`` exceeds the model's context.
    """
    prompts = check_prompts(prompts)
    max_new_tokens = positive_int(max_new_tokens, "max_new_tokens")
    n_samples = positive_int(n_samples, "n_samples")
    batch_size = positive_int(batch_size, "batch_size")
    if n_samples > 1 and not do_sample:
        raise ParameterError(
            f"n_samples={n_samples} with greedy decoding gives {n_samples} identical "
            "continuations; pass do_sample=True or n_samples=1."
        )
    hooks = hook_list(fwd_hooks, model)
    if isinstance(stop, str) or any(not isinstance(s, str) or not s for s in stop):
        raise ParameterError(f"stop must be a list of non-empty strings, got {stop!r}.")
    view = ModelView(model)
    rows, lengths = tokenize(model, prompts, view.d_vocab, view.n_ctx)
    if max(lengths) + max_new_tokens > view.n_ctx:
        raise ContextLengthError(
            f"A prompt of {max(lengths)} tokens plus max_new_tokens={max_new_tokens} exceeds the "
            f"model's context of {view.n_ctx}; shorten the prompt or generate fewer tokens."
        )
    eos = getattr(view.tokenizer, "eos_token_id", None)
    jobs = [(i, s) for i in range(len(prompts)) for s in range(n_samples)]
    by_length: dict[int, list[tuple[int, int]]] = {}
    for job in jobs:
        by_length.setdefault(lengths[job[0]], []).append(job)
    out: list[list[str]] = [[""] * n_samples for _ in prompts]
    if do_sample:
        torch.manual_seed(seed)
    bar = tqdm(total=len(jobs), desc="generate", disable=not progress)
    try:
        with torch.inference_mode(), model.hooks(fwd_hooks=hooks):
            for length in sorted(by_length):
                group = by_length[length]
                for start in range(0, len(group), batch_size):
                    chunk = group[start:start + batch_size]
                    tokens = torch.stack([rows[i] for i, _ in chunk]).to(view.input_device)
                    new = model.generate(
                        tokens, max_new_tokens=max_new_tokens, do_sample=do_sample,
                        use_past_kv_cache=True, verbose=False, stop_at_eos=eos is not None,
                        **generate_kwargs)[:, length:]
                    for (i, s), ids in zip(chunk, new, strict=True):
                        out[i][s] = _cut(_decode(view.tokenizer, ids, eos), stop)
                    bar.update(len(chunk))
    finally:
        bar.close()
    return out


def _cut(text: str, stop: Sequence[str]) -> str:
    ends = [text.find(s) for s in stop if s in text]
    return text[:min(ends)] if ends else text


def _decode(tokenizer: Any, ids: torch.Tensor, eos: int | None) -> str:
    kept: list[int] = ids.tolist()
    if eos is not None and eos in kept:
        kept = kept[:kept.index(eos)]
    return tokenizer.decode(kept, skip_special_tokens=True)
