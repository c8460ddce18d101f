"""Decode intermediate layers: the logit lens, latent-language curves, the tuned lens, MWork.

``logit_lens`` reads block outputs through the model's own final norm and unembedding;
``latent_language`` turns that into Wendler et al.'s P(English) / P(target) curves over Start(w)
token sets with confidence intervals; ``TunedLens`` adds trained per-layer translators;
``Patchscope`` (``lens="patchscope"``) lets the model decode each state itself; ``mwork``
runs the measurement with and without neuron masks and splits the layers into stages. Everything
runs inside ``model.hooks(...)``, so any lensneurons intervention applies.

Examples:
    >>> import lensneurons as ln
    >>> from lensneurons.lens import latent_language, prompts
    >>> model = ln.organism.load()
    >>> curves = latent_language(model, prompts.translation(src="fr", tgt="de", limit=20))
    >>> curves.plot()  # doctest: +SKIP

"""


from lensneurons.lens import prompts
from lensneurons.lens.latent import LatentLanguageResult, latent_language
from lensneurons.lens.logit import logit_lens
from lensneurons.lens.mwork import MWorkResult, mwork, stage_split
from lensneurons.lens.patchscope import Patchscope
from lensneurons.lens.prompts import LensItem, WordList, load_words
from lensneurons.lens.readout import readout_fn
from lensneurons.lens.result import LensResult
from lensneurons.lens.tokens import TokenSet, start_tokens
from lensneurons.lens.tuned import TunedLens

__all__ = [
    "LatentLanguageResult",
    "LensItem",
    "LensResult",
    "MWorkResult",
    "Patchscope",
    "TokenSet",
    "TunedLens",
    "WordList",
    "latent_language",
    "load_words",
    "logit_lens",
    "mwork",
    "prompts",
    "readout_fn",
    "start_tokens",
    "stage_split",
]

