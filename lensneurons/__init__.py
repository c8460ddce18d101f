"""lensneurons: language- and culture-specific neurons on TransformerLens hook points.

Data flows one way: model + corpus -> statistics -> neuron sets -> hooks -> evaluation and lens.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> stats = ln.collect(model, ln.Corpus.from_texts(ln.organism.texts("train")), progress=False)
    >>> neurons = ln.lape(stats, top_rate=0.10)
    >>> with model.hooks(fwd_hooks=ln.deactivate(neurons["fr"])):
    ...     logits = model("Le chat dort.")
"""

__version__ = "0.1.0"

import warnings as _warnings
from typing import Any as _Any

from lensneurons import (
    codemix,
    errors,
    langid,
    lens,
    models,
    organism,
    real_stats,
    sae,
    steering,
    viz,
)
from lensneurons.corpus import Corpus, TokenizedCorpus
from lensneurons.detect import TernaryResult, lape, ternary
from lensneurons.detect.attribution import AttributionItem, AttributionScores, attribution
from lensneurons.detect.attribution_sets import next_token_items, others_mean
from lensneurons.detect.culture import CultureNeurons, culture_neurons
from lensneurons.detect.groupings import compound, generic, pure_culture
from lensneurons.detect.plnd import PLNDResult, plnd
from lensneurons.detect.sae_lape import sae_lape
from lensneurons.errors import LensNeuronsError
from lensneurons.evaluate import nll_delta, perplexity, perplexity_matrix, ppl_ratio, specificity
from lensneurons.interventions import (
    NeuronHook,
    add_activation,
    amplify,
    deactivate,
    set_activation,
    steer,
)
from lensneurons.lens import (
    LatentLanguageResult,
    LensItem,
    LensResult,
    MWorkResult,
    TokenSet,
    TunedLens,
    WordList,
    latent_language,
    load_words,
    logit_lens,
    mwork,
    prompts,
    readout_fn,
    stage_split,
    start_tokens,
)
from lensneurons.model import ModelView
from lensneurons.neurons import NeuronSet, NeuronSets, random_like
from lensneurons.sae import SAE, sae_site
from lensneurons.sites import Site, get_site
from lensneurons.stats import ActivationStats, collect
from lensneurons.steering import fallback, forcing_rate, steering_shift, sweep

__all__ = [  # noqa: RUF022
    # modules
    "codemix", "errors", "langid", "lens", "models", "organism", "prompts", "real_stats", "sae",
    "steering", "viz",
    # model + corpus -> statistics
    "ModelView", "Site", "get_site", "Corpus", "TokenizedCorpus", "ActivationStats", "collect",
    # statistics -> neuron sets
    "lape", "ternary", "TernaryResult", "NeuronSet", "NeuronSets", "random_like",
    "compound", "pure_culture", "generic",
    "attribution", "AttributionItem", "AttributionScores", "culture_neurons", "CultureNeurons",
    "next_token_items", "others_mean",
    "plnd", "PLNDResult",
    "SAE", "sae_site", "sae_lape",
    # neuron sets -> hooks
    "NeuronHook", "deactivate", "amplify", "set_activation", "add_activation", "steer",
    # evaluation
    "perplexity", "perplexity_matrix", "ppl_ratio", "nll_delta", "specificity",
    # steering evaluation
    "forcing_rate", "steering_shift", "sweep", "fallback",
    # the lens
    "logit_lens", "latent_language", "mwork", "stage_split", "readout_fn", "TunedLens",
    "LensResult", "LatentLanguageResult", "MWorkResult", "LensItem", "WordList", "TokenSet",
    "load_words", "start_tokens",
    # errors: the base class here, every other one in ln.errors
    "LensNeuronsError",
]


def __getattr__(name: str) -> _Any:
    """Error classes used to live at the top level: keep them one release, with a warning."""
    if name != "LensNeuronsError" and hasattr(errors, name) and name[0].isupper():
        _warnings.warn(f"ln.{name} moved to ln.errors.{name}; the old name goes in the next "
                       "release.", DeprecationWarning, stacklevel=2)
        return getattr(errors, name)
    raise AttributeError(f"module 'lensneurons' has no attribute {name!r}")
