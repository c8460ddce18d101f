"""SAE-LAPE (Andrylie et al. 2025): language-specific units by a per-document rule.

Andrylie et al. select language-specific SAE features with their own rule, not Tang et al.'s
percentiles (``docs/methods/sae.md``). With ``P[l,u,k] = active / n_tokens`` of group ``k`` and
the entropy ``H`` of ``P`` normalised over groups (as in LAPE)::

    kept      = ∃k:  active_docs[k,l,u] >= ⌊example_rate · n_docs[k]⌋     fires in >= 98% of the
                                                                          documents of one group
              ∧ ∃k': active[k',l,u]     >  ⌊token_rate · n_tokens[k']⌋    and on > 10% of the
                                                                          tokens of one group
    member_k  = kept ∧ P[l,u,k] >= ratio · max_k' P[l,u,k']
    lang_specific: units that are members of more than one group are dropped
    per_group_budget=N: each group keeps its N members of lowest H, over all layers (ties by
              index), as ``lape(..., per_group_budget=N)`` does

``k`` and ``k'`` need not be the same group. The ``⌊·⌋`` are the released code's ``int(...)``.

The rule works on any site's statistics (MLP neurons too); it needs per-document counts,
collected with ``collect(..., document_stats=True)`` on a corpus with one document per sequence.

The document rule needs documents: every group must have enough that ``⌊example_rate ·
n_docs⌋ >= 2`` (with the default 0.98, at least 3 documents). With fewer the rule is vacuous or
nearly so: one document gives ``⌊0.98⌋ = 0`` (every unit passes), two give 1 (a unit active
anywhere in the group passes), and since one group passing keeps a unit, a single such group
turns the rule off for all. :func:`sae_lape` refuses such statistics instead of silently
applying the token rule alone.

Examples:
    >>> import lensneurons as ln
    >>> stats = ln.ActivationStats.from_counts(
    ...     {"en": torch.tensor([[50, 5, 50]]), "fr": torch.tensor([[2, 60, 45]])},
    ...     {"en": 100, "fr": 100},
    ...     doc_counts={"en": torch.tensor([[10, 3, 10]]), "fr": torch.tensor([[1, 10, 10]])},
    ...     n_docs={"en": 10, "fr": 10})
    >>> sets = sae_lape(stats)
    >>> sets["en"].indices[0].tolist(), sets["fr"].indices[0].tolist()
    ([0], [1])
"""

from __future__ import annotations

import math

import torch
from einops import rearrange

from lensneurons.core import checks as _checks
from lensneurons.detect._common import entropy, lowest, probabilities, provenance
from lensneurons.errors import EmptyGroupError, MissingStatisticError
from lensneurons.neurons import NeuronSet, NeuronSets
from lensneurons.stats.activation_stats import ActivationStats


def sae_lape(
    stats: ActivationStats,
    *,
    example_rate: float = 0.98,
    token_rate: float = 0.10,
    ratio: float = 0.5,
    lang_specific: bool = True,
    per_group_budget: int | None = None,
) -> NeuronSets:
    """Language-specific units by SAE-LAPE's rule (Andrylie et al. 2025); see the module.

    None of the rates is a selected share (so none is a ``top_rate``): ``example_rate`` and
    ``token_rate`` are thresholds on document and token counts, ``ratio`` a threshold relative
    to a unit's highest probability; the one selection, ``per_group_budget``, is a count.

    Args:
        stats: statistics of at least two groups with per-document counts
            (``collect(..., document_stats=True)``, or ``ActivationStats.from_counts`` with
            ``doc_counts`` and ``n_docs``).
        example_rate: a unit is kept only if, in some group, it is active in at least
            ``⌊example_rate · n_docs⌋`` documents; in ``(0, 1]``. That must be at least 2
            documents in every group (see the module).
        token_rate: ...and, in some group, on more than ``⌊token_rate · n_tokens⌋`` tokens; in
            ``[0, 1)``.
        ratio: a kept unit joins every group whose probability is at least ``ratio`` times its
            highest; in ``(0, 1]`` (0.5 in the paper's scripts, whose command-line default is
            0.8).
        lang_specific: drop units that join more than one group (the paper's
            ``--lang-specific``).
        per_group_budget: keep each group's ``per_group_budget`` members of lowest entropy
            (``None``: all); a count per group, the name :func:`~lensneurons.lape` uses.

    Returns:
        The sets per group; ``meta`` holds the parameters, how many units were kept, and how
        many joined 1, 2, ... groups (``groups_per_unit``, before ``lang_specific``).

    Raises:
        MissingStatisticError: ``stats`` hold no per-document counts.
        EmptyGroupError: a group has too few documents for the document rule to mean
            anything (``⌊example_rate · n_docs⌋ < 2``; with the default, fewer than 3).
        TooFewGroupsError: fewer than two groups.
        ParameterError: a rate or ratio out of its range (or NaN), ``per_group_budget < 1``,
            a non-bool ``lang_specific``, or ``stats`` that are not :class:`ActivationStats`.

    Examples:
        >>> import lensneurons as ln
        >>> model = ln.organism.load()
        >>> texts = {g: lines[:6] for g, lines in ln.organism.texts("heldout").items()}
        >>> stats = ln.collect(model, ln.Corpus.from_texts(texts), document_stats=True,
        ...                    progress=False)
        >>> sets = sae_lape(stats, per_group_budget=5)
        >>> max(len(s) for s in sets.values()) <= 5
        True
    """
    example_rate = _checks.rate(example_rate, "example_rate")
    token_rate = _checks.percentile(token_rate, "token_rate")
    ratio = _checks.rate(ratio, "ratio")
    lang_specific = _checks.flag(lang_specific, "lang_specific")
    per_group_budget = _checks.optional_positive_int(per_group_budget, "per_group_budget")
    probs = probabilities(stats, "SAE-LAPE")
    if stats.active_docs is None or stats.n_docs is None:
        raise MissingStatisticError(
            "SAE-LAPE's rule counts the documents a unit is active in, and these statistics "
            "hold no per-document counts. Collect them with ln.collect(model, corpus, "
            "document_stats=True) on a corpus with one document per sequence (pack=False), or "
            "pass doc_counts= and n_docs= to ActivationStats.from_counts.")
    _check_documents(stats.groups, stats.n_docs.tolist(), example_rate)
    docs_needed = torch.tensor([int(example_rate * n) for n in stats.n_docs.tolist()])
    tokens_over = torch.tensor([int(token_rate * n) for n in stats.n_tokens.tolist()])
    in_docs = rearrange(stats.active_docs >= docs_needed[:, None, None], "k l u -> l u k")
    on_tokens = rearrange(stats.active > tokens_over[:, None, None], "k l u -> l u k")
    kept = in_docs.any(-1) & on_tokens.any(-1)
    members = kept[..., None] & (probs >= ratio * probs.amax(-1, keepdim=True))
    joined = members.sum(-1)
    histogram = torch.bincount(joined[kept], minlength=probs.shape[-1] + 1)[1:].tolist()
    if lang_specific:
        members &= (joined == 1)[..., None]
    if per_group_budget is not None:
        scores = entropy(probs)
        members = torch.stack([
            lowest(scores.masked_fill(~members[..., k], float("inf")), per_group_budget)
            & members[..., k]
            for k in range(probs.shape[-1])], dim=-1)
    meta = {
        "method": "sae_lape", "example_rate": example_rate, "token_rate": token_rate,
        "ratio": ratio, "lang_specific": lang_specific, "per_group_budget": per_group_budget,
        "kept": int(kept.sum()),
        "groups_per_unit": histogram, **provenance(stats),
    }
    gated = stats.meta.get("gated")
    return NeuronSets({g: NeuronSet(members[..., k], site=stats.site, gated=gated)
                       for k, g in enumerate(stats.groups)}, meta)


#: Documents the rule must demand of a unit in every group: with fewer, one document suffices.
MIN_DOCS_NEEDED = 2


def _check_documents(groups: list[str], n_docs: list[int], example_rate: float) -> None:
    """Refuse groups whose document rule would demand fewer than two documents."""
    needed = [int(example_rate * n) for n in n_docs]
    short = [k for k, need in enumerate(needed) if need < MIN_DOCS_NEEDED]
    if not short:
        return
    least = max(1, math.floor(MIN_DOCS_NEEDED / example_rate))
    while int(example_rate * least) < MIN_DOCS_NEEDED:
        least += 1
    k = short[0]
    others = [groups[j] for j in short[1:]]
    also = f" ({', '.join(map(repr, others))} too)" if others else ""
    raise EmptyGroupError(
        f"Group {groups[k]!r} has {n_docs[k]} document(s){also}, too few for SAE-LAPE's "
        f"document rule: a unit passes it by being active in int({example_rate} x "
        f"{n_docs[k]}) = {needed[k]} of them, so the rule cannot tell a unit that fires across "
        "documents from one that fires once (and one group passing is enough). Collect at "
        f"least {least} documents for every group (one text per sequence: "
        "ln.collect(..., document_stats=True) on an unpacked corpus), or drop the group."
    )
