"""Offline text sources: the built-in written sample and the installed gettext catalogs.

Example:
    >>> from lensneurons.corpora import load_sample
    >>> sorted(load_sample(split="heldout"))
    ['de', 'el', 'en', 'es', 'fr', 'pt', 'ru']

"""

from lensneurons.corpora.gettext import find_locale_dir, load_gettext
from lensneurons.corpora.sample import SAMPLE_LANGUAGES, load_sample

__all__ = ["SAMPLE_LANGUAGES", "find_locale_dir", "load_gettext", "load_sample"]
