"""Offline text sources: the written sample, the gettext catalogs, installed source code.

Example:
    >>> from lensneurons.corpora import load_sample
    >>> sorted(load_sample(split="heldout"))
    ['de', 'el', 'en', 'es', 'fr', 'pt', 'ru']

"""

from lensneurons.corpora.code import load_code
from lensneurons.corpora.culture import CULTURES, culture_items
from lensneurons.corpora.gettext import find_locale_dir, load_gettext
from lensneurons.corpora.sample import SAMPLE_LANGUAGES, load_sample

__all__ = ["CULTURES", "culture_items",
           "SAMPLE_LANGUAGES", "find_locale_dir", "load_code", "load_gettext", "load_sample"]
