"""Batched generation under hooks that says what the model's own forward pass says.

The one place steering evaluations call ``model.generate``. Prompts are grouped by their length
in tokens, so a batch needs no padding (a left-padded batch would need an attention mask that
TL 2 and TL 4 handle differently, and greedy continuations would then depend on the batch);
continuations are cut at the first end-of-sequence token and decoded without special tokens.

**The KV cache is used only where it is proven right.** Cached decoding is only a faster way to
compute the same next-token logits as a forward pass over the whole sequence, and in some
environments it is not: with transformers 5.24.0 and 5.25.0, cached decoding (Hugging Face's own
``generate`` included) continues Llama and Gemma 3 models with garbage on the CPU, while 5.23.0
and earlier agree with the forward pass. So before a model's first generation,
:func:`check_kv_cache` decodes a probe greedily both ways, once per model, dtype and device; where
the two disagree, generation recomputes the whole sequence at every step (slower, correct) and
every result says which way it decoded (``"kv-cache"`` or ``"full-forward"``).

Examples:
    >>> import lensneurons as ln
    >>> from lensneurons.evaluate import check_kv_cache, generate
    >>> model = ln.organism.load()
    >>> check_kv_cache(model).mode in ("kv-cache", "full-forward")
    True
    >>> [[text]] = generate(model, ["Le chat"], max_new_tokens=6)
    >>> isinstance(text, str)
    True
"""

from __future__ import annotations

import importlib.metadata
import inspect
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from lensneurons.core.checks import hook_list, positive_int
from lensneurons.core.model import ModelView
from lensneurons.errors import ContextLengthError, InvalidTextError, KVCacheError, ParameterError
from lensneurons.lens._inputs import tokenize

#: The probe of :func:`check_kv_cache`: this text's tokens and as many rows of random tokens of
#: the same length (after the same first token), continued greedily for 12 tokens. Random rows
#: make the probe sensitive on small or random models whose continuations of text barely vary.
_PROBE_TEXT = "The capital of France is Paris, and the capital of Germany is"
_PROBE_ROWS = 4
_PROBE_TOKENS = 12
#: Options ``generate`` sets itself: the prompts are batched unpadded, by length, and decoded.
_FIXED = ("input", "return_type", "output_logits", "return_cache", "return_input_tokens",
          "attention_mask", "padding_side", "names_filter")

@dataclass(frozen=True)
class KVCacheCheck:
    """Whether cached greedy decoding reproduces the full forward pass on one model.

    Attributes:
        agrees: the two decodings gave the same tokens.
        tokens_checked: new tokens compared per probe row.
        first_difference: the first step at which they differ, or ``None``.
        environment: the library versions the check ran under.
    """

    agrees: bool
    tokens_checked: int
    first_difference: int | None
    environment: str

    @property
    def mode(self) -> str:
        """How :func:`generate` decodes this model: ``"kv-cache"`` or ``"full-forward"``."""
        return "kv-cache" if self.agrees else "full-forward"


class Generations(list):
    """Continuations, ``[prompt][sample]``, and how they were decoded (``.decoding``)."""

    def __init__(self, continuations: list[list[str]], *, decoding: str) -> None:
        super().__init__(continuations)
        self.decoding = decoding


#: Checks done, per model and (dtype, device).
_CHECKS: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], KVCacheCheck]] = (
    weakref.WeakKeyDictionary())


def environment() -> str:
    """The versions that decide how a model decodes: TransformerLens, transformers, torch.

    Examples:
        >>> "transformers" in environment()
        True
    """
    names = ("transformer-lens", "transformers", "torch")
    return ", ".join(f"{name} {importlib.metadata.version(name)}" for name in names)


def check_kv_cache(model: Any) -> KVCacheCheck:
    """Decode a probe greedily with and without the KV cache and compare token for token.

    Runs once per model, dtype and device (the answer is remembered), before the caller's hooks
    are registered; hooks that are registered already take part, and the answer is then not
    remembered. The probe is four rows of 12 new tokens; cached decoding that differs from the
    full forward pass anywhere is not used by :func:`generate`. A context too short for the probe
    never uses the cache.

    Examples:
        >>> import lensneurons as ln
        >>> check = check_kv_cache(ln.organism.load())
        >>> check.tokens_checked
        12
    """
    view = ModelView(model)
    key = (str(next(iter(model.parameters())).dtype), str(view.input_device))
    per_model = _CHECKS.setdefault(model, {})
    if key in per_model:
        return per_model[key]
    text = model.to_tokens(_PROBE_TEXT, truncate=False)[0].cpu()
    text = text[:max(0, view.n_ctx - _PROBE_TOKENS)]
    if len(text) < 2:  # a context too short to probe: never trust the cache
        return KVCacheCheck(agrees=False, tokens_checked=0, first_difference=0,
                            environment=environment())
    noise = torch.randint(view.d_vocab, (_PROBE_ROWS - 1, len(text) - 1),
                          generator=torch.Generator().manual_seed(0))
    noise = torch.cat([text[:1].expand(_PROBE_ROWS - 1, 1), noise], dim=1)
    probe = torch.cat([text[None], noise]).to(view.input_device)
    with torch.inference_mode():
        both = [model.generate(probe, max_new_tokens=_PROBE_TOKENS, do_sample=False,
                               use_past_kv_cache=cached, stop_at_eos=False,
                               verbose=False)[:, len(text):].cpu()
                for cached in (True, False)]
    same = (both[0] == both[1]).all(dim=0)
    first_difference = None if bool(same.all()) else int((~same).nonzero()[0])
    check = KVCacheCheck(agrees=first_difference is None, tokens_checked=_PROBE_TOKENS,
                         first_difference=first_difference, environment=environment())
    if not _live_hooks(model):  # a check under someone's hooks holds for those hooks only
        per_model[key] = check
    return check


def _live_hooks(model: Any) -> int:
    """Forward hooks registered on the model's hook points now."""
    return sum(len(point._forward_hooks) for point in getattr(model, "hook_dict", {}).values())


def decoding_mode(model: Any, use_past_kv_cache: bool | None = None,
                  fwd_hooks: Sequence[tuple[Any, Callable[..., Any]]] = (), *,
                  pad_in_input: bool = False) -> str:
    """How :func:`generate` will decode: ``"kv-cache"`` or ``"full-forward"``.

    Args:
        model: a TransformerLens model.
        use_past_kv_cache: ``None`` (default): the cache where :func:`check_kv_cache` proved it
            right, else the full forward; ``False``: the full forward; ``True``: the cache, which
            must have passed the check.
        fwd_hooks: the hooks of the generation. Hooks that edit chosen positions only (the
            package's hooks made with ``positions=``) decode with the full forward unless
            ``use_past_kv_cache=True``: with the cache every step after the prompt is a forward
            pass of one position, so the positions would mean something else.
        pad_in_input: the prompts hold the tokenizer's pad id, or the continuations may (pad
            equals end-of-sequence and generation runs past it): TransformerLens 2 masks pad
            tokens only when it decodes with its cache, so these decode with the full forward
            unless ``use_past_kv_cache=True``.

    Raises:
        ParameterError: ``use_past_kv_cache`` is not ``None`` or a bool.
        KVCacheError: ``True``, but cached decoding disagrees with the forward pass here.
    """
    if use_past_kv_cache is not None and not isinstance(use_past_kv_cache, bool):
        raise ParameterError(
            f"use_past_kv_cache must be True, False or None (checked automatically), got "
            f"{use_past_kv_cache!r}.")
    positional = any(getattr(fn, "positions", None) is not None for _, fn in fwd_hooks)
    if use_past_kv_cache is False or (use_past_kv_cache is None and (positional or pad_in_input)):
        return "full-forward"
    check = check_kv_cache(model)
    if use_past_kv_cache and not check.agrees:
        raise KVCacheError(
            f"With {check.environment}, cached greedy decoding differs from the model's forward "
            f"pass from new token {check.first_difference} on, so a cached generation would not "
            "be what the model says. Leave use_past_kv_cache unset (generation then recomputes "
            "the sequence at every step), or install a transformers release whose cache agrees "
            "(5.23.0; 5.24.0 and 5.25.0 do not).")
    return check.mode


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


def _generate_options(model: Any, options: dict[str, Any], eos: int | None) -> dict[str, Any]:
    """The caller's options for ``model.generate`` over this package's defaults, checked."""
    fixed = sorted(set(options) & set(_FIXED))
    if fixed:
        raise ParameterError(
            f"generate sets {fixed} itself (it returns decoded continuations of the prompts); "
            "remove them.")
    named = {name for name, p in inspect.signature(model.generate).parameters.items()
             if p.kind is not inspect.Parameter.VAR_KEYWORD}
    unknown = sorted(set(options) - named)
    if unknown:
        raise ParameterError(
            f"{type(model).__name__}.generate takes no option {unknown}; pass one of "
            f"{sorted(named - set(_FIXED) - {'self'})}.")
    stop_at_eos = options.get("stop_at_eos", eos is not None)
    if not isinstance(stop_at_eos, bool):
        raise ParameterError(f"stop_at_eos must be True or False, got {stop_at_eos!r}.")
    if stop_at_eos and eos is None and options.get("eos_token_id") is None:
        raise ParameterError(
            "stop_at_eos=True, but the tokenizer has no end-of-sequence token; pass "
            "eos_token_id=... or stop_at_eos=False.")
    return {"verbose": False, **options, "stop_at_eos": stop_at_eos}


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
    use_past_kv_cache: bool | None = None,
    **generate_kwargs: Any,
) -> Generations:
    """Continuations of every prompt under ``fwd_hooks``: ``[prompt][sample]`` strings.

    The returned list also says how it was decoded (``.decoding``: ``"kv-cache"`` or
    ``"full-forward"``, see :func:`decoding_mode`).

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
        use_past_kv_cache: ``None``: the KV cache where :func:`check_kv_cache` proved it equal
            to the forward pass, else the full forward at every step (see
            :func:`decoding_mode`); ``False``: always the full forward; ``True``: the cache,
            refused where it disagrees.
        **generate_kwargs: passed to ``model.generate`` (``temperature``, ``top_k``, ``top_p``,
            ``freq_penalty``, ``stop_at_eos``, ``eos_token_id`` ...). With
            ``stop_at_eos=False`` continuations run past the end-of-sequence token.

    Raises:
        ParameterError: ``max_new_tokens`` or ``n_samples`` below 1, ``n_samples > 1`` with
            greedy decoding, malformed hooks, or an option ``model.generate`` does not take.
        ContextLengthError: a prompt plus ``max_new_tokens`` exceeds the model's context.
        KVCacheError: ``use_past_kv_cache=True`` where the cache disagrees with the forward.
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
    options = _generate_options(model, generate_kwargs, eos)
    cut_at = options.get("eos_token_id", eos) if options["stop_at_eos"] else None
    pad = getattr(view.tokenizer, "pad_token_id", None)
    pad_in_input = pad is not None and (any(bool((row == pad).any()) for row in rows)
                                        or (not options["stop_at_eos"] and pad == eos))
    decoding = decoding_mode(model, use_past_kv_cache, hooks, pad_in_input=pad_in_input)
    cached = decoding == "kv-cache"
    jobs = [(i, s) for i in range(len(prompts)) for s in range(n_samples)]
    by_length: dict[int, list[tuple[int, int]]] = {}
    for job in jobs:
        by_length.setdefault(lengths[job[0]], []).append(job)
    out = Generations([[""] * n_samples for _ in prompts], decoding=decoding)
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
                    new = model.generate(tokens, max_new_tokens=max_new_tokens,
                                         do_sample=do_sample, use_past_kv_cache=cached,
                                         **options)[:, length:]
                    for (i, s), ids in zip(chunk, new, strict=True):
                        out[i][s] = _cut(_decode(view.tokenizer, ids, cut_at), stop)
                    bar.update(len(chunk))
    finally:
        bar.close()
    return out


def _cut(text: str, stop: Sequence[str]) -> str:
    ends = [text.find(s) for s in stop if s in text]
    return text[:min(ends)] if ends else text


def _decode(tokenizer: Any, ids: torch.Tensor, eos: Any) -> str:
    """Token ids as text, cut before the first end-of-sequence id (``eos``: an id, ids or None)."""
    ends = set() if eos is None else {int(e) for e in (eos if isinstance(eos, Sequence) else [eos])}
    kept: list[int] = ids.tolist()
    for position, token in enumerate(kept):
        if token in ends:
            kept = kept[:position]
            break
    return tokenizer.decode(kept, skip_special_tokens=True)
