"""Steering and what it does to what a model says.

* :func:`generate`: continuations under hooks, with the KV cache only where
  :func:`check_kv_cache` proved it equal to the forward pass;
* :func:`forcing_rate`: the share of continuations in a target language, with a Wilson interval,
  on any prompts or the package's questions (:func:`forcing_prompts`, cut at :data:`STOP`);
* :func:`steering_shift`: the language steering shift (LSS) over premise/answer items, with the
  shipped facts (:func:`shift_items`);
* :func:`sweep`: forcing rate, LSS and held-out NLL over intervention strengths;
* :func:`fallback`: which language a model falls back to as its neurons go, with the step
  builders :func:`layer_steps`, :func:`quantile_steps` and :func:`language_steps`;
* :func:`amplify_to`: Rahmanisa et al.'s patched amplification (``p_max``, ``p_median``).

Examples:
    >>> import lensneurons as ln
    >>> ln.steering.wilson_interval(0, 10)[1] < 0.31
    True
"""

from lensneurons.steering._generate import KVCacheCheck, check_kv_cache, decoding_mode, generate
from lensneurons.steering.amplification import amplification_values, amplify_to
from lensneurons.steering.fallback import (
    FallbackResult,
    fallback,
    language_steps,
    layer_steps,
    quantile_steps,
)
from lensneurons.steering.forcing import ForcingResult, forcing_rate, wilson_interval
from lensneurons.steering.prompts import STOP, forcing_prompts
from lensneurons.steering.shift import (
    ShiftItem,
    ShiftResult,
    answer_differences,
    shift_items,
    shift_languages,
    steering_shift,
)
from lensneurons.steering.sweep import SweepResult, sweep

__all__ = [
    "STOP",
    "FallbackResult",
    "ForcingResult",
    "KVCacheCheck",
    "ShiftItem",
    "ShiftResult",
    "SweepResult",
    "amplification_values",
    "amplify_to",
    "answer_differences",
    "check_kv_cache",
    "decoding_mode",
    "fallback",
    "forcing_prompts",
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
