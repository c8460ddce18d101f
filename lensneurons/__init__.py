"""lensneurons: language- and culture-specific neurons on TransformerLens hook points.

The pipeline, one sub-package a stage, data flowing one way: ``corpora`` (texts in, counted
batches out) -> ``stats`` (``collect``: per-group statistics) -> ``detect`` (neuron sets) ->
``intervene`` (``fwd_hooks``) -> ``evaluate`` (perplexity, generation, forcing) and ``lens``
(what the layers predict) -> ``show`` (figures, token views). ``core`` is the
foundation under all of them, ``neurons`` the sets they pass along, ``sae`` SAE latents as a
site, ``subjects`` the models studied.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> stats = ln.collect(model, ln.Corpus.from_texts(ln.organism.texts("train")), progress=False)
    >>> neurons = ln.lape(stats, top_rate=0.10)
    >>> with model.hooks(fwd_hooks=ln.deactivate(neurons["fr"])):
    ...     logits = model("Le chat dort.")
"""

from lensneurons import (
    core,
    corpora,
    detect,
    errors,
    evaluate,
    intervene,
    lens,
    neurons,
    sae,
    show,
    subjects,
)
from lensneurons.core import __version__
from lensneurons.core.model import ModelView
from lensneurons.core.sites import Site, get_site
from lensneurons.corpora import Corpus, TokenizedCorpus
from lensneurons.detect import (
    AttributionScores,
    CultureNeurons,
    Directions,
    PLNDResult,
    TernaryResult,
    attribution,
    culture_neurons,
    diffmean_directions,
    lape,
    pca_directions,
    plnd,
    sae_lape,
    ternary,
)
from lensneurons.errors import LensNeuronsError
from lensneurons.evaluate import (
    fallback,
    forcing_rate,
    nll_delta,
    perplexity,
    perplexity_matrix,
    specificity,
    steering_shift,
    sweep,
)
from lensneurons.intervene import (
    add_activation,
    add_direction,
    amplify,
    deactivate,
    set_activation,
    steer,
)
from lensneurons.lens import TunedLens, latent_language, logit_lens, mwork, prompts
from lensneurons.neurons import NeuronSet, NeuronSets
from lensneurons.sae import SAE, sae_site
from lensneurons.show import ModelCard, report
from lensneurons.stats import ActivationStats, collect
from lensneurons.subjects import models, organism, real_stats

#: Figures and token views (the ``show`` stage), under the name notebooks already use.
viz = show

__all__ = [  # noqa: RUF022 -- pipeline order, not alphabetical
    "__version__",
    # the stages, in pipeline order
    "core", "corpora", "stats", "detect", "neurons", "intervene", "evaluate", "lens", "show",
    "viz", "sae", "subjects", "errors",
    # subjects: the models studied
    "organism", "models", "real_stats", "ModelView", "Site", "get_site",
    # corpora -> statistics
    "Corpus", "TokenizedCorpus", "collect", "ActivationStats",
    # statistics -> neuron sets
    "lape", "ternary", "TernaryResult", "plnd", "PLNDResult", "attribution", "AttributionScores",
    "culture_neurons", "CultureNeurons", "sae_lape", "SAE", "sae_site", "NeuronSet", "NeuronSets",
    # statistics of the residual stream -> directions (the baselines of neuron sets)
    "diffmean_directions", "pca_directions", "Directions",
    # neuron sets -> fwd_hooks
    "deactivate", "amplify", "set_activation", "add_activation", "steer", "add_direction",
    # evaluation under the hooks
    "perplexity", "perplexity_matrix", "nll_delta", "specificity",
    "forcing_rate", "steering_shift", "sweep", "fallback",
    # the lens
    "logit_lens", "latent_language", "mwork", "TunedLens", "prompts",
    # show: the multilingual model card
    "report", "ModelCard",
    # errors: the base class here, every other one in ln.errors
    "LensNeuronsError",
]
