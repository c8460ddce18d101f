"""Group sets from gradient attribution: next-token items from plain text, and a per-group control.

:func:`~lensneurons.detect.attribution.attribution` scores units on prompt/answer items. For
groups that are languages there are no questions to ask, only text, so :func:`next_token_items`
turns lines of a language into language-modelling items: a prefix of a line is the prompt and the
token that follows it in the same line is the answer (``docs/methods/attribution.md``, "Language
sets").

CULNIG's selection (:func:`~lensneurons.detect.culture.culture_neurons`) keeps, per group ``c``,
the top units by ``S_c = q_c − k_c``, the group's score minus a control score, and then those
whose ``S_c`` stands out across groups (``z_c ≥ 0.5``). With languages the natural control of a
language is what the *other* languages need: :func:`others_mean` gives, per group, the mean score
of all the other groups, to pass as ``control_scores``::

    k_c(n) = mean over the groups h ≠ c of q_h(n)
    S_c(n) = q_c(n) − k_c(n)

Only the specific sets of ``culture_neurons`` are meaningful with this control: the general
score ``Σ_c q_c − Σ_c k_c`` is zero for every unit (up to rounding), since each group's score is
subtracted once in total from the others' controls.

Examples:
    >>> import torch
    >>> import lensneurons as ln
    >>> from lensneurons.detect.attribution_sets import others_mean
    >>> def s(x): return ln.AttributionScores({"mlp": torch.tensor([x])}, n_items=2)
    >>> q = {"en": s([3.0, 0, 1]), "de": s([0.0, 4, 1]), "fr": s([0.0, 0, 1])}
    >>> control = others_mean(q)
    >>> control["en"]["mlp"].tolist()
    [[0.0, 2.0, 1.0]]
    >>> out = ln.culture_neurons(q, control, None, general_mlp_top_rate=1 / 3,
    ...                          specific_top_rate=1 / 3)
    >>> sets = out.specific["mlp"]
    >>> {g: sets[g].mask.nonzero()[:, 1].tolist() for g in sets}
    {'en': [0], 'de': [1], 'fr': []}
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView, same_fingerprint
from lensneurons.corpora.items import AttributionItem
from lensneurons.detect.attribution import AttributionScores
from lensneurons.errors import (
    EmptyGroupError,
    InvalidTextError,
    ModelMismatchError,
    ParameterError,
    ShapeMismatchError,
    TooFewGroupsError,
)

__all__ = ["next_token_items", "others_mean"]


def next_token_items(
    model: Any,
    lines: Sequence[str],
    n_items: int,
    *,
    min_prompt: int = 4,
    max_prompt: int = 32,
    seed: int = 0,
) -> list[AttributionItem]:
    """One language-modelling item per line: a prefix of the line and its next token.

    Lines are read in order, and each gives at most one item, until there are ``n_items``. A line
    is tokenized on its own (no BOS); a cut position ``k`` is drawn at random (``seed``) among
    the positions with ``min_prompt <= k <= max_prompt`` whose token holds a letter (so the answer
    is a piece of a word, not punctuation, a digit or a space). The prompt is the decoded text of
    the first ``k`` tokens and the answer is the id of token ``k``. A cut is kept only when the
    prompt tokenizes back to exactly those ``k`` tokens (a cut inside a character split into byte
    tokens does not); otherwise the next drawn position is tried. The answer is given as a token
    id because a word piece tokenized on its own can differ from the same piece inside the line.

    Args:
        model: the TransformerLens model whose tokenizer cuts the lines.
        lines: texts of one group (e.g. one language's training lines).
        n_items: how many items to make.
        min_prompt: fewest prompt tokens (BOS not counted).
        max_prompt: most prompt tokens (bounds the cost of a gradient pass).
        seed: seed of the cut positions.

    Returns:
        ``n_items`` items (:class:`~lensneurons.AttributionItem`), in the order of their lines.

    Raises:
        InvalidTextError: ``lines`` is not a list of strings.
        ParameterError: ``n_items``, ``min_prompt`` or ``max_prompt`` is not an integer >= 1,
            or ``max_prompt < min_prompt``.
        EmptyGroupError: the lines give fewer than ``n_items`` items.

    Examples:
        >>> import lensneurons as ln
        >>> model = ln.organism.load()
        >>> lines = ln.organism.texts("train")["de"]
        >>> items = next_token_items(model, lines, 3, seed=0)
        >>> items[0].prompt, model.tokenizer.decode([items[0].answer])
        ('Das Wetter ist', ' he')
        >>> lines[0].startswith(items[0].prompt)
        True
    """
    if isinstance(lines, (str, bytes)) or not isinstance(lines, Sequence) or not all(
            isinstance(line, str) for line in lines):
        raise InvalidTextError("lines must be a list of strings (the texts of one group).")
    n_items = _checks.positive_int(n_items, "n_items")
    min_prompt = _checks.positive_int(min_prompt, "min_prompt")
    max_prompt = _checks.positive_int(max_prompt, "max_prompt")
    if max_prompt < min_prompt:
        raise ParameterError(
            f"max_prompt ({max_prompt}) must be at least min_prompt ({min_prompt}).")
    seed = _checks.integer(seed, "seed")
    tokenizer = ModelView(model).tokenizer
    rng = random.Random(seed)
    items: list[AttributionItem] = []
    for line in lines:
        ids = list(tokenizer(line, add_special_tokens=False)["input_ids"])
        cuts = [k for k in range(min_prompt, min(len(ids) - 1, max_prompt) + 1)
                if any(ch.isalpha() for ch in tokenizer.decode([ids[k]]))]
        rng.shuffle(cuts)
        for k in cuts:
            prompt = tokenizer.decode(ids[:k])
            if list(tokenizer(prompt, add_special_tokens=False)["input_ids"]) == ids[:k]:
                items.append(AttributionItem(prompt, ids[k]))
                break
        if len(items) == n_items:
            return items
    raise EmptyGroupError(
        f"The {len(lines)} lines give {len(items)} items, fewer than n_items={n_items}: a line "
        f"gives an item only when it has a word token after at least min_prompt={min_prompt} "
        "tokens. Pass more (or longer) lines, or ask for fewer items."
    )


def others_mean(
    scores_by_group: Mapping[str, AttributionScores],
) -> dict[str, AttributionScores]:
    """Per group, the mean score of all the other groups: the control of a group contrast.

    Pass the result as ``control_scores`` of :func:`~lensneurons.culture_neurons` (with
    ``country_scores=None``) to select, per group, the units it needs more than the others do.

    Args:
        scores_by_group: per group, attribution scores computed with the same model and sites.

    Returns:
        Per group, :class:`~lensneurons.AttributionScores` holding the unweighted mean over the
        other groups (``n_items``: their total items; ``meta``: the first group's, with
        ``control`` naming the groups averaged).

    Raises:
        TooFewGroupsError: fewer than two groups.
        ParameterError: a value is not :class:`~lensneurons.AttributionScores`.
        ShapeMismatchError: the groups' scores cover other sites or shapes.
        ModelMismatchError: the scores come from different models.

    Examples:
        >>> import torch
        >>> import lensneurons as ln
        >>> q = {g: ln.AttributionScores({"mlp": torch.full((1, 2), v)}, n_items=3)
        ...      for g, v in (("en", 1.0), ("de", 2.0), ("fr", 6.0))}
        >>> out = others_mean(q)
        >>> out["en"]["mlp"].tolist(), out["en"].n_items, out["en"].meta["control"]
        ([[4.0, 4.0]], 6, ['de', 'fr'])
    """
    _checks.mapping(scores_by_group, "scores_by_group", "{group: AttributionScores}")
    groups = list(scores_by_group)
    if len(groups) < 2:
        raise TooFewGroupsError(
            f"others_mean compares each group with the others, got {groups}. Give at least two.")
    first = scores_by_group[groups[0]]
    for group in groups:
        scores = scores_by_group[group]
        if not isinstance(scores, AttributionScores):
            raise ParameterError(
                f"The scores of group {group!r} must be AttributionScores (from ln.attribution), "
                f"got {type(scores).__name__}.")
        if scores.sites != first.sites or any(scores[s].shape != first[s].shape
                                              for s in first.sites):
            raise ShapeMismatchError(
                f"Group {group!r} has scores {scores!r}, group {groups[0]!r} {first!r}: score "
                "every group with the same model and sites.")
        if not same_fingerprint(first.meta.get("fingerprint"), scores.meta.get("fingerprint")):
            raise ModelMismatchError(
                f"The scores of {group!r} and {groups[0]!r} come from different models.")
    out = {}
    for group in groups:
        rest = [g for g in groups if g != group]
        mean = {s: torch.stack([scores_by_group[g][s] for g in rest]).mean(0)
                for s in first.sites}
        out[group] = AttributionScores(
            mean, n_items=sum(scores_by_group[g].n_items for g in rest),
            meta={**first.meta, "control": rest})
    return out
