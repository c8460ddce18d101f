"""Code-mixing: bilingual lexicons, word-level mixing of texts, and the units mixed input uses.

Three steps, after Trinley et al. (2025), who mix a base language with words of another and ask
whether the model's units then look like the base language's, the mixed-in one's, or neither:

1. :func:`build_lexicon` aligns words of two languages from offline parallel text (the written
   sample and the gettext catalogs); :func:`coverage` says how much of a text it covers.
2. :func:`code_mix` replaces a given share of the words of each text, deterministically.
3. :func:`specialisation_iou` compares the active sets (:func:`active_sets`) of statistics
   collected on mixed texts with those of pure languages, per layer;
   :func:`plot_specialisation` draws the IoU against the mixing rate.

The method page is ``docs/methods/codemix.md``.

Examples:
    >>> from lensneurons.codemix import build_lexicon, code_mix, mixed_group
    >>> from lensneurons.corpora import load_sample
    >>> lex = build_lexicon("fr", "en", sources=("sample",))
    >>> text = load_sample(["fr"])["fr"][:1]
    >>> text[0]
    "Il fait beau aujourd'hui, alors nous allons au parc."
    >>> code_mix(text, lex, 0.5).texts[0]
    "Il fait beautiful aujourd'hui, so we going au parc."
    >>> mixed_group("fr", "en", 0.5)
    'fr+en@0.5'
"""

from lensneurons.codemix.lexicon import SOURCES, WORD, Lexicon, build_lexicon, words
from lensneurons.codemix.mixing import Coverage, MixResult, code_mix, coverage, mixed_group
from lensneurons.codemix.specialisation import (
    active_sets,
    plot_specialisation,
    specialisation_iou,
)

__all__ = [
    "SOURCES",
    "WORD",
    "Coverage",
    "Lexicon",
    "MixResult",
    "active_sets",
    "build_lexicon",
    "code_mix",
    "coverage",
    "mixed_group",
    "plot_specialisation",
    "specialisation_iou",
    "words",
]
