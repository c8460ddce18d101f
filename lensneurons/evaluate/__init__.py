"""Evaluate: run the model under hooks and measure what changed.

* :func:`perplexity`, :func:`perplexity_matrix` (a :class:`PerplexityMatrix`), :func:`nll_delta`
  (paired bootstrap intervals), :func:`ppl_ratio`, :func:`specificity`;
* :func:`generate`: continuations under hooks, with the KV cache only where
  :func:`check_kv_cache` proved it equal to the forward pass;
* :func:`forcing_rate`: the share of continuations in a target language, with a Wilson interval,
  on any prompts or the package's questions (:func:`~lensneurons.corpora.forcing_prompts`);
* :func:`steering_shift`: the language steering shift (LSS) over premise/answer items, with the
  shipped facts (:func:`shift_items`);
* :func:`sweep`: forcing rate, LSS and held-out NLL over intervention strengths;
* :func:`fallback`: which language a model falls back to as its neurons go, with the step
  builders :func:`layer_steps`, :func:`quantile_steps` and :func:`language_steps`.

Examples:
    >>> import lensneurons as ln
    >>> ln.evaluate.wilson_interval(0, 10)[1] < 0.31
    True
"""

from lensneurons.evaluate.deltas import nll_delta, ppl_ratio, specificity
from lensneurons.evaluate.fallback import (
    FallbackResult,
    fallback,
    language_steps,
    layer_steps,
    quantile_steps,
)
from lensneurons.evaluate.forcing import ForcingResult, forcing_rate, wilson_interval
from lensneurons.evaluate.generation import KVCacheCheck, check_kv_cache, decoding_mode, generate
from lensneurons.evaluate.nll import Perplexity, PerplexityMatrix, SequenceNLL
from lensneurons.evaluate.perplexity import perplexity, perplexity_matrix
from lensneurons.evaluate.shift import (
    ShiftItem,
    ShiftResult,
    answer_differences,
    shift_items,
    shift_languages,
    steering_shift,
)
from lensneurons.evaluate.sweep import SweepResult, sweep

__all__ = [
    "Perplexity",
    "PerplexityMatrix",
    "SequenceNLL",
    "nll_delta",
    "perplexity",
    "perplexity_matrix",
    "ppl_ratio",
    "specificity",
    "FallbackResult",
    "ForcingResult",
    "KVCacheCheck",
    "ShiftItem",
    "ShiftResult",
    "SweepResult",
    "answer_differences",
    "check_kv_cache",
    "decoding_mode",
    "fallback",
    "forcing_rate",
    "generate",
    "language_steps",
    "layer_steps",
    "quantile_steps",
    "shift_items",
    "shift_languages",
    "steering_shift",
    "sweep",
    "wilson_interval",
]
