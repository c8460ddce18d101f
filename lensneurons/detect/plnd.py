"""PLND: parallel language-specific neuron detection (Zhao et al. 2024).

The detector of *How do Large Language Models Handle Multilingualism?* (Zhao et al. 2024).

Each document (one sequence of the corpus) is run once, with hooks; in every layer each unit gets
an importance, the norm of the change of its module's output when the unit is removed, over the
document's counted positions (docs/methods/plnd.md):

* ``"mlp"``: ``||H[:,k]||_2 * ||W_down[k,:]||_2``, ``H`` the input of ``W_down`` (``hook_post``);
* ``"attn.v"``: ``||A V[:,k]||_2``, the change of the per-head outputs before ``W_O``
  (``hook_z``), over every head that reads the value dimension (grouped-query attention);
* ``"attn.q"``, ``"attn.k"``: the change of the attention output when dimension ``k`` is removed
  from the scores, ``S - c q[:,k] k[:,k]^T``, with ``q`` and ``k`` read where the scores are
  formed (``attn.hook_rot_q`` / ``attn.hook_rot_k``, after rotary and q/k norms; ``hook_q`` /
  ``hook_k`` on models without them) and ``S`` from ``attn.hook_attn_scores`` (the model's mask
  applied once). The scale ``c`` is read off the model's own scores and checked.

Per document and layer the top ``top_rate`` of units are *activated*. The result keeps, per
group, how many of its documents activate each unit (not a bare intersection), so sets stay
ranked; a group's specific set is the units activated in at least ``doc_frequency`` of its
documents, minus those activated in every group.

Deviation from the paper: ``doc_frequency`` defaults to 0.9 (:data:`DOC_FREQUENCY`), not the
paper's intersection over every document (``doc_frequency=1.0``, :data:`PAPER_DOC_FREQUENCY`,
still selectable). The intersection shrinks as documents are added: on 400 gettext lines per
language it leaves 1-8 MLP units per language on the organism (and empties some of its attention
sets at 200), and a sixth of its 50-document size on Gemma 3 270M, while the 0.9 sets settle,
changing by at most 12% from 200 to 400 documents on both (docs/methods/plnd.md, "Which
documents count"). :func:`plnd` warns
(:class:`~lensneurons.errors.EmptySetWarning`) when a group's set comes out empty at its
``doc_frequency``.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> texts = {g: lines[:4] for g, lines in ln.organism.texts("heldout").items()}
    >>> result = ln.plnd(model, ln.Corpus.from_texts(texts), sites=("mlp", "attn.v"),
    ...                  progress=False)
    >>> result.frequency("mlp").shape[1:]
    torch.Size([4, 2048])
    >>> sets = result.neuron_sets("mlp", doc_frequency=0.75)
    >>> hooks = ln.deactivate(sets["fr"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float, Int

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView
from lensneurons.core.sites import check_site_name
from lensneurons.corpora.corpus import Corpus
from lensneurons.detect._plnd_result import DOC_FREQUENCY as DOC_FREQUENCY
from lensneurons.detect._plnd_result import PAPER_DOC_FREQUENCY as PAPER_DOC_FREQUENCY
from lensneurons.detect._plnd_result import PLNDResult
from lensneurons.detect._plnd_scorer import Scorer
from lensneurons.errors import (
    ParameterError,
    PLNDInterrupted,
    ShortDocumentError,
    TooFewGroupsError,
    UnknownSiteError,
)
from lensneurons.stats.passes import run_batches

SITES = ("mlp", "attn.q", "attn.k", "attn.v")
VARIANTS = ("paper", "reference-code")
#: The released setting for Mistral-7B (README: 1000 attention and 2000 FFN units kept per
#: document and layer) as shares of that model's widths (4096 q dimensions, 14336 neurons).
PAPER_TOP_RATE = {"mlp": 2000 / 14336, "attn.q": 1000 / 4096, "attn.k": 1000 / 4096,
                      "attn.v": 1000 / 4096}


def plnd(
    model: Any,
    corpus: Corpus,
    *,
    sites: Sequence[str] = SITES,
    top_rate: float | Mapping[str, float] | None = None,
    doc_frequency: float = DOC_FREQUENCY,
    variant: Literal["paper", "reference-code"] = "paper",
    batch_size: int = 8,
    max_tokens_per_group: int | None = None,
    progress: bool = True,
) -> PLNDResult:
    """Per-document importance of every unit, and how often each is among a document's top units.

    Args:
        model: a TransformerLens model (``TransformerBridge`` or ``HookedTransformer``).
        corpus: documents per group (each sequence of the corpus is one document); at least two
            groups, every document at least 2 counted tokens.
        sites: any of ``"mlp"``, ``"attn.q"``, ``"attn.k"``, ``"attn.v"``.
        top_rate: share of a layer's units activated per document, in ``(0, 1]``: one
            number, or one per site (default :data:`PAPER_TOP_RATE`).
        doc_frequency: default threshold of :meth:`PLNDResult.neuron_sets`, in ``(0, 1]``: a
            unit is activated for a group when it is among the top units of at least this
            share of the group's documents. Default 0.9 (:data:`DOC_FREQUENCY`), a deviation
            from the paper: its rule, activated in *every* document, is ``1.0``
            (:data:`PAPER_DOC_FREQUENCY`), and it shrinks to empty sets as the corpus grows.
        variant: ``"paper"`` (the ablation norms above) or ``"reference-code"`` (the released
            code's scores: ``sum |up|`` for the MLP, ``sum |z|`` for V, and the summed squared
            change of the attention pattern under the unscaled ``q k^T`` term for Q/K).
        batch_size: documents per forward pass.
        max_tokens_per_group: use only the first documents of each group, up to this many
            counted tokens.
        progress: show a progress bar.

    Returns:
        A :class:`PLNDResult` (frequencies per site, ``neuron_sets``, ``table``, ``plot``,
        ``save``).

    Raises:
        TooFewGroupsError: the corpus has one group (nothing is specific to it).
        ShortDocumentError: a document has fewer than 2 counted tokens.
        UnknownSiteError: a site is unknown, or its hooks are missing on this model.
        ParameterError: ``top_rate``, ``doc_frequency``, ``variant`` or ``sites`` is invalid.
        UnsupportedModelError: the model's attention scores are not a scaled product of the
            queries and keys (Q/K sites only), or its MLP has no ``W_out``.
        InsufficientMemoryError: a single document does not fit in the device's memory (a
            batch that does not fit is split and retried, with a ``BatchSplitWarning``).
        PLNDInterrupted: Ctrl-C; ``.partial`` holds the result of the finished documents.

    Warns:
        EmptySetWarning: at ``doc_frequency``, some group's specific set (``exclude="all"``) is
            empty at some site; the message names them and what to change (a lower
            ``doc_frequency``, a larger ``top_rate``, fewer documents).

    Examples:
        >>> import lensneurons as ln
        >>> corpus = ln.Corpus.from_texts({"en": ["The cat sleeps on the mat."] * 2,
        ...                                "fr": ["Le chat dort sur le tapis."] * 2})
        >>> result = ln.plnd(ln.organism.load(), corpus, progress=False)
        >>> result.n_docs.tolist(), result.sites
        ([2, 2], ['mlp', 'attn.q', 'attn.k', 'attn.v'])
    """
    sites = _sites(sites)
    rates = _rates(top_rate, sites)
    doc_frequency = _checks.rate(doc_frequency, "doc_frequency")
    if variant not in VARIANTS:
        raise ParameterError(f"variant must be one of {VARIANTS}, got {variant!r}.")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    _checks.flag(progress, "progress")
    if len(corpus.groups) < 2:
        raise TooFewGroupsError(
            f"PLND subtracts the units every group shares, so one group ({corpus.groups}) "
            "leaves nothing specific. Give at least two groups (e.g. two languages).")
    view = ModelView(model)
    tokenized = corpus.tokenize(view).limit(max_tokens_per_group)
    _check_lengths(tokenized, corpus.groups)
    scorer = Scorer(view, sites, rates, variant, len(corpus.groups))
    meta = {"method": "plnd", "variant": variant, "top_rate": rates,
            "doc_frequency": doc_frequency, "gated": view.gated, "points": scorer.points,
            "corpus": repr(corpus), "fingerprint": view.fingerprint()}
    try:
        run_batches(view, tokenized, batch_size, scorer, stop_at=scorer.stop_at,
                    fwd_hooks=scorer.hooks(), progress=progress, desc="plnd")
    except KeyboardInterrupt as stop:
        if isinstance(stop, PLNDInterrupted):
            raise
        raise _interrupted(scorer, list(corpus.groups), meta, len(tokenized.sequences),
                           tokenized.n_batches(batch_size)) from stop
    result = PLNDResult(list(corpus.groups), scorer.counts, scorer.n_docs, meta)
    result._warn_empty({s: result._specific(s, doc_frequency, "all") for s in sites})
    return result


def _interrupted(scorer: Scorer, groups: list[str], meta: dict[str, Any], n_docs: int,
                 n_batches: int) -> PLNDInterrupted:
    """The Ctrl-C of :func:`plnd`, carrying the counts of the finished batches' documents."""
    kept = [g for g, n in enumerate(scorer.n_docs.tolist()) if n > 0]
    partial = None
    if kept:
        index = torch.tensor(kept)
        partial = PLNDResult([groups[g] for g in kept],
                             {s: c[index] for s, c in scorer.counts.items()},
                             scorer.n_docs[index], {**meta, "partial": True})
    done = int(scorer.n_docs.sum())
    return PLNDInterrupted(
        f"plnd was interrupted after {scorer.batches} of {n_batches} batches ({done} of "
        f"{n_docs} documents); the document frequencies of the finished documents are on this "
        "exception's .partial (groups without a finished document left out). Run plnd again "
        "to score every document.", partial, done, n_docs, scorer.batches, n_batches)


def document_scores(
    model: Any, corpus: Corpus, *, sites: Sequence[str] = SITES,
    variant: Literal["paper", "reference-code"] = "paper", batch_size: int = 8,
    progress: bool = False,
) -> tuple[dict[str, Float[torch.Tensor, "doc layer unit"]], Int[torch.Tensor, " doc"]]:
    """The raw PLND importance of every unit in every document (what :func:`plnd` ranks).

    Memory grows with the corpus (documents x layers x units per site): use it to inspect or
    test scores on a few documents, and :func:`plnd` for detection.

    Returns:
        Per site the scores ``[doc, layer, unit]``, and each document's group index; documents
        are in the order of the corpus's batches (longest first).

    Examples:
        >>> import lensneurons as ln
        >>> corpus = ln.Corpus.from_texts({"en": ["The cat sleeps.", "A dog runs far."]})
        >>> scores, groups = document_scores(ln.organism.load(), corpus, sites=("mlp",))
        >>> scores["mlp"].shape, groups.tolist()
        (torch.Size([2, 4, 2048]), [0, 0])
    """
    sites = _sites(sites)
    if variant not in VARIANTS:
        raise ParameterError(f"variant must be one of {VARIANTS}, got {variant!r}.")
    view = ModelView(model)
    tokenized = corpus.tokenize(view)
    _check_lengths(tokenized, corpus.groups)
    scorer = Scorer(view, sites, dict.fromkeys(sites, 1.0), variant, len(corpus.groups),
                    keep=True)
    run_batches(view, tokenized, _checks.positive_int(batch_size, "batch_size"), scorer,
                stop_at=scorer.stop_at, fwd_hooks=scorer.hooks(), progress=progress,
                desc="plnd scores")
    return {s: torch.cat(scorer.kept[s]) for s in sites}, torch.cat(scorer.kept_rows)


def _sites(sites: Any) -> tuple[str, ...]:
    if isinstance(sites, str) or not isinstance(sites, Sequence) or not sites:
        raise ParameterError(
            f"sites must be a non-empty list of site names such as ('mlp', 'attn.v'), got "
            f"{sites!r}.")
    for site in sites:
        if site not in SITES:
            check_site_name(site)  # raises for unknown names
            raise UnknownSiteError(
                f"PLND scores the model's own units, sites {SITES}; {site!r} is not one of them.")
    if len(set(sites)) != len(sites):
        raise ParameterError(f"sites lists a site twice: {list(sites)}.")
    return tuple(sites)


def _rates(top_rate: Any, sites: tuple[str, ...]) -> dict[str, float]:
    if top_rate is None:
        return {s: PAPER_TOP_RATE[s] for s in sites}
    if isinstance(top_rate, Mapping):
        missing = [s for s in sites if s not in top_rate]
        if missing:
            raise ParameterError(
                f"top_rate gives no value for {missing}; give one per site, or one number.")
        return {s: _checks.rate(top_rate[s], f"top_rate[{s!r}]") for s in sites}
    value = _checks.rate(top_rate, "top_rate")
    return dict.fromkeys(sites, value)


def _check_lengths(tokenized: Any, groups: list[str]) -> None:
    seen = [0] * len(groups)
    for seq in tokenized.sequences:
        seen[seq.group] += 1
        n = int(seq.counted.sum())
        if n < 2:
            raise ShortDocumentError(
                f"Document {seen[seq.group]} of group {groups[seq.group]!r} has {n} counted "
                "token(s); PLND ranks units within each document, which needs at least 2. Drop "
                "or merge the shortest texts (a long text's last window can be that short too: "
                "pass Corpus.from_texts(..., window=...) to change where it is cut).")
