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

from lensneurons import lens, models, organism, real_stats, viz
from lensneurons.corpus import Corpus, TokenizedCorpus
from lensneurons.detect import TernaryResult, lape, ternary
from lensneurons.errors import (
    ChecksumError,
    EmptyGroupError,
    EmptyTokenizationError,
    HookShapeError,
    InsufficientMemoryError,
    LensNeuronsError,
    MissingStatisticError,
    MissingTokenizerError,
    ModelCacheError,
    ModelMismatchError,
    ModelNotInstalledError,
    ModelSourceError,
    NegativeCountError,
    NoGroupsError,
    PositionError,
    SearchBoundWarning,
    ShapeMismatchError,
    TooFewGroupsError,
    UnknownGroupError,
    UnknownSiteError,
    UnsupportedModelError,
)
from lensneurons.evaluate import nll_delta, perplexity, perplexity_matrix, ppl_ratio, specificity
from lensneurons.interventions import (
    NeuronHook,
    add_activation,
    amplify,
    deactivate,
    random_like,
    set_activation,
    steer,
)
from lensneurons.lens import *  # noqa: F403  (the lens's public names, see lens.__all__)
from lensneurons.model import ModelView
from lensneurons.neurons import NeuronSet, NeuronSets
from lensneurons.sites import Site, get_site
from lensneurons.stats import ActivationStats, collect

__all__ = [  # noqa: RUF022
    "lens",
    "models",
    "organism",
    "real_stats",
    "ActivationStats",
    "NeuronHook",
    "NeuronSet",
    "NeuronSets",
    "TernaryResult",
    "add_activation",
    "amplify",
    "deactivate",
    "lape",
    "nll_delta",
    "perplexity",
    "perplexity_matrix",
    "ppl_ratio",
    "specificity",
    "random_like",
    "set_activation",
    "steer",
    "ternary",
    "viz",
    "ChecksumError",
    "Corpus",
    "EmptyGroupError",
    "EmptyTokenizationError",
    "HookShapeError",
    "InsufficientMemoryError",
    "LensNeuronsError",
    "MissingStatisticError",
    "MissingTokenizerError",
    "ModelCacheError",
    "ModelMismatchError",
    "ModelNotInstalledError",
    "ModelSourceError",
    "ModelView",
    "NegativeCountError",
    "NoGroupsError",
    "PositionError",
    "SearchBoundWarning",
    "ShapeMismatchError",
    "Site",
    "TokenizedCorpus",
    "TooFewGroupsError",
    "UnknownGroupError",
    "UnknownSiteError",
    "UnsupportedModelError",
    "collect",
    "get_site",
]
__all__ += lens.__all__
