"""Groupings other than language: culture and compound sets built from ``NeuronSets`` algebra.

A *group* is any label whose tokens are counted together: a language, a culture, a programming
language. ``collect`` and ``lape`` treat them alike, so culture or code sets are detected exactly
as language sets are, from a corpus keyed by culture or by programming language. What differs is
how sets of two groupings are combined. Namazifard & Galke (2025) detect sets on language
corpora and, separately, on culture corpora (culture-laden text written in the culture's own
language), then disentangle them:

- **compound** ``L_l & C_c(l)``: units of language ``l`` that also belong to its culture ``c(l)``
  (:func:`compound`);
- **pure culture** ``C_c - (union of language sets)``: culture units that no language set
  explains (:func:`pure_culture`; ``scope="own"`` subtracts only the culture's own languages, as
  the authors' script does);
- **generic culture**: units in every pure set (:func:`generic`).

Kargaran et al. (2025) detect programming-language sets with a fixed budget per group
(``lape(stats, per_group_budget=400)``) and look at the units selected for one language only
(``NeuronSets.exclusive()``); both exist already (recipes: ``docs/methods/groupings.md``).

Examples:
    >>> import torch
    >>> import lensneurons as ln
    >>> def sets(**idx):
    ...     return ln.NeuronSets({g: ln.NeuronSet.from_indices([i], width=8)
    ...                           for g, i in idx.items()})
    >>> langs = sets(de=[0, 1], fa=[4])
    >>> cults = sets(de=[1, 2], fa=[4, 5, 6])
    >>> [s.indices[0].tolist() for s in compound(langs, cults).values()]
    [[1], [4]]
    >>> [s.indices[0].tolist() for s in pure_culture(cults, langs).values()]
    [[2], [5, 6]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch

from lensneurons.errors import ParameterError, UnknownGroupError
from lensneurons.neurons import NeuronSet, NeuronSets

__all__ = ["compound", "generic", "pure_culture"]


def _check_sets(value: object, name: str) -> NeuronSets:
    if not isinstance(value, NeuronSets):
        raise ParameterError(
            f"{name} must be NeuronSets (e.g. ln.lape(stats)), got {type(value).__name__}."
        )
    return value


def _pairs(languages: NeuronSets, cultures: NeuronSets,
           culture_of: Mapping[str, str] | None) -> dict[str, str]:
    """``{language: culture}``: ``culture_of`` checked, or the names both groupings share."""
    if culture_of is None:
        pairs = {g: g for g in languages.groups if g in cultures.groups}
        if not pairs:
            raise UnknownGroupError(
                f"The language sets {languages.groups} and the culture sets {cultures.groups} "
                "share no group name; pass culture_of={language: culture}, e.g. "
                "{'de': 'german'}."
            )
        return pairs
    if not isinstance(culture_of, Mapping) or not culture_of:
        raise ParameterError(
            "culture_of must be a non-empty mapping {language: culture}, e.g. {'de': 'german'}; "
            f"got {culture_of!r}."
        )
    bad_l = [g for g in culture_of if g not in languages.groups]
    bad_c = [c for c in culture_of.values() if c not in cultures.groups]
    if bad_l or bad_c:
        raise UnknownGroupError(
            f"culture_of names languages {bad_l} or cultures {bad_c} that the sets do not hold; "
            f"languages: {languages.groups}, cultures: {cultures.groups}."
        )
    return dict(culture_of)


def compound(
    languages: NeuronSets, cultures: NeuronSets, culture_of: Mapping[str, str] | None = None,
) -> NeuronSets:
    """Compound sets: units of a language that also belong to that language's culture.

    ``compound[l] = languages[l] & cultures[culture_of[l]]`` (Namazifard & Galke's ``L and C``).

    Args:
        languages: sets detected on language corpora.
        cultures: sets detected on culture corpora, same model and site.
        culture_of: ``{language: culture}``; by default each language is paired with the culture
            of the same name (groups present in both).

    Returns:
        One set per paired language, keyed by the language.

    Raises:
        ParameterError: an argument is not ``NeuronSets``, or ``culture_of`` is not a mapping.
        UnknownGroupError: ``culture_of`` names a group the sets do not hold, or (by default)
            the two groupings share no name.
        ShapeMismatchError: the sets differ in shape or site.

    Examples:
        >>> import lensneurons as ln
        >>> langs = ln.NeuronSets({"de": ln.NeuronSet.from_indices([[0, 1]], width=4)})
        >>> cults = ln.NeuronSets({"german": ln.NeuronSet.from_indices([[1, 3]], width=4)})
        >>> compound(langs, cults, {"de": "german"})["de"].indices[0].tolist()
        [1]
    """
    languages = _check_sets(languages, "languages")
    cultures = _check_sets(cultures, "cultures")
    pairs = _pairs(languages, cultures, culture_of)
    meta = {"method": "compound", "culture_of": pairs}
    return NeuronSets({lang: languages[lang] & cultures[cult] for lang, cult in pairs.items()},
                      meta)


def pure_culture(
    cultures: NeuronSets, languages: NeuronSets, culture_of: Mapping[str, str] | None = None,
    *, scope: Literal["all", "own"] = "all",
) -> NeuronSets:
    """Pure culture sets: culture units that no language set holds.

    With ``scope="all"`` (default) ``pure[c] = cultures[c] - union(languages)``: nothing left is a
    unit of any language. With ``scope="own"``, only the culture's own languages (those
    ``culture_of`` maps to it, or the language of the same name) are subtracted, as in
    Namazifard & Galke's released script; a unit of another language can then stay.

    Args:
        cultures: sets detected on culture corpora.
        languages: sets detected on language corpora, same model and site.
        culture_of: ``{language: culture}``, used by ``scope="own"`` (default: same names).
        scope: ``"all"`` or ``"own"``.

    Returns:
        One set per culture, keyed by the culture (a culture without own language under
        ``scope="own"`` keeps its whole set).

    Raises:
        ParameterError: an argument is not ``NeuronSets``, or an unknown ``scope``.
        UnknownGroupError: ``culture_of`` names a group the sets do not hold.
        ShapeMismatchError: the sets differ in shape or site.

    Examples:
        >>> import lensneurons as ln
        >>> cults = ln.NeuronSets({"german": ln.NeuronSet.from_indices([[1, 2, 3]], width=4)})
        >>> langs = ln.NeuronSets({"de": ln.NeuronSet.from_indices([[1]], width=4),
        ...                        "fa": ln.NeuronSet.from_indices([[3]], width=4)})
        >>> pure_culture(cults, langs)["german"].indices[0].tolist()
        [2]
        >>> pure_culture(cults, langs, {"de": "german"}, scope="own")["german"].indices[0].tolist()
        [2, 3]
    """
    cultures = _check_sets(cultures, "cultures")
    languages = _check_sets(languages, "languages")
    if scope not in ("all", "own"):
        raise ParameterError(f"scope must be 'all' or 'own', got {scope!r}.")
    first = next(iter(cultures.values()))
    if scope == "all":
        removed = {c: languages.union() for c in cultures.groups}
        pairs: dict[str, str] = {}
    else:
        pairs = (_pairs(languages, cultures, culture_of) if culture_of is not None
                 else {g: g for g in languages.groups if g in cultures.groups})
        empty = NeuronSet(torch.zeros(first.shape, dtype=torch.bool), site=first.site)
        removed = {c: empty for c in cultures.groups}
        for lang, cult in pairs.items():
            removed[cult] = removed[cult] | languages[lang]
    meta = {"method": "pure_culture", "scope": scope, "culture_of": pairs}
    return NeuronSets({c: cultures[c] - removed[c] for c in cultures.groups}, meta)


def generic(sets: NeuronSets) -> NeuronSet:
    """Units that belong to every group: Namazifard & Galke's generic culture set ``and_c Pure_c``.

    Args:
        sets: any sets, e.g. :func:`pure_culture`'s.

    Returns:
        The intersection of all groups' sets.

    Raises:
        ParameterError: ``sets`` is not ``NeuronSets``.

    Examples:
        >>> import lensneurons as ln
        >>> sets = ln.NeuronSets({"a": ln.NeuronSet.from_indices([[0, 2]], width=4),
        ...                       "b": ln.NeuronSet.from_indices([[2, 3]], width=4)})
        >>> generic(sets).indices[0].tolist()
        [2]
    """
    sets = _check_sets(sets, "sets")
    members = list(sets.values())
    mask = torch.stack([s.mask for s in members]).all(0)
    return NeuronSet(mask, site=members[0].site, gated=members[0].gated,
                     fingerprint=sets.meta.get("fingerprint"))
