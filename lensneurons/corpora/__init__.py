"""Corpora: texts in, counted batches out; offline sources, items, language ID, mixed text.

Examples:
    >>> import lensneurons as ln
    >>> corpus = ln.Corpus.from_texts({"fr": ["Le chat dort."], "en": ["The cat sleeps."]})
    >>> corpus.groups
    ['fr', 'en']
    >>> sorted(ln.corpora.SAMPLE_LANGUAGES)
    ['de', 'el', 'en', 'es', 'fr', 'pt', 'ru']
"""

from lensneurons.corpora import langid
from lensneurons.corpora.code import load_code
from lensneurons.corpora.corpus import Corpus, TokenizedCorpus
from lensneurons.corpora.culture import CULTURES, culture_items
from lensneurons.corpora.gettext import find_locale_dir, load_gettext
from lensneurons.corpora.lexicon import SOURCES, WORD, Lexicon, build_lexicon, words
from lensneurons.corpora.mixing import Coverage, MixResult, code_mix, coverage, mixed_group
from lensneurons.corpora.questions import STOP, forcing_prompts
from lensneurons.corpora.sample import SAMPLE_LANGUAGES, load_sample

__all__ = [
    "CULTURES", "SAMPLE_LANGUAGES", "SOURCES", "STOP", "WORD", "Corpus", "Coverage", "Lexicon",
    "MixResult", "TokenizedCorpus", "build_lexicon", "code_mix", "coverage", "culture_items",
    "find_locale_dir", "forcing_prompts", "langid", "load_code", "load_gettext", "load_sample",
    "mixed_group", "words",
]
