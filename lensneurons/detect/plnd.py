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

Per document and layer the top ``top_fraction`` of units are *activated*. The result keeps, per
group, how many of its documents activate each unit (not a bare intersection), so sets stay
ranked; a group's specific set is the units activated in at least ``doc_frequency`` of its
documents, minus those activated in every group.

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

from lensneurons import _checks
from lensneurons._passes import run_batches
from lensneurons.corpus import Batch, Corpus
from lensneurons.detect import _plnd_scores as scores
from lensneurons.detect._plnd_result import PLNDResult
from lensneurons.errors import (
    HookShapeError,
    ParameterError,
    ShortDocumentError,
    TooFewGroupsError,
    UnknownSiteError,
    UnsupportedModelError,
)
from lensneurons.model import ModelView
from lensneurons.sites import check_site_name, get_site

SITES = ("mlp", "attn.q", "attn.k", "attn.v")
VARIANTS = ("paper", "reference-code")
#: The released setting for Mistral-7B (README: 1000 attention and 2000 FFN units kept per
#: document and layer) as fractions of that model's widths (4096 q dimensions, 14336 neurons).
PAPER_TOP_FRACTION = {"mlp": 2000 / 14336, "attn.q": 1000 / 4096, "attn.k": 1000 / 4096,
                      "attn.v": 1000 / 4096}


def plnd(
    model: Any,
    corpus: Corpus,
    *,
    sites: Sequence[str] = SITES,
    top_fraction: float | Mapping[str, float] | None = None,
    doc_frequency: float = 1.0,
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
        top_fraction: share of a layer's units activated per document, in ``(0, 1]``: one
            number, or one per site (default :data:`PAPER_TOP_FRACTION`).
        doc_frequency: default threshold of :meth:`PLNDResult.neuron_sets`, in ``(0, 1]``
            (1.0: activated in every document of the group, PLND's intersection).
        variant: ``"paper"`` (the ablation norms above) or ``"reference-code"`` (the released
            code's scores: ``sum |up|`` for the MLP, ``sum |z|`` for V, and the summed squared
            change of the attention pattern under the unscaled ``q k^T`` term for Q/K).
        batch_size: documents per forward pass.
        max_tokens_per_group: use only the first documents of each group, up to this many
            counted tokens.
        progress: show a progress bar.

    Returns:
        A :class:`PLNDResult` (frequencies per site, ``neuron_sets``, ``save``).

    Raises:
        TooFewGroupsError: the corpus has one group (nothing is specific to it).
        ShortDocumentError: a document has fewer than 2 counted tokens.
        UnknownSiteError: a site is unknown, or its hooks are missing on this model.
        ParameterError: ``top_fraction``, ``doc_frequency``, ``variant`` or ``sites`` is invalid.
        UnsupportedModelError: the model's attention scores are not a scaled product of the
            queries and keys (Q/K sites only), or its MLP has no ``W_out``.

    Examples:
        >>> import lensneurons as ln
        >>> corpus = ln.Corpus.from_texts({"en": ["The cat sleeps on the mat."] * 2,
        ...                                "fr": ["Le chat dort sur le tapis."] * 2})
        >>> result = ln.plnd(ln.organism.load(), corpus, progress=False)
        >>> result.n_docs.tolist(), result.sites
        ([2, 2], ['mlp', 'attn.q', 'attn.k', 'attn.v'])
    """
    sites = _sites(sites)
    fractions = _fractions(top_fraction, sites)
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
    scorer = _Scorer(view, sites, fractions, variant, len(corpus.groups))
    run_batches(view, tokenized, batch_size, stop_at=scorer.stop_at, fwd_hooks=scorer.hooks(),
                start=scorer.start, finish=scorer.finish, progress=progress, desc="plnd")
    meta = {"method": "plnd", "variant": variant, "top_fraction": fractions,
            "doc_frequency": doc_frequency, "gated": view.gated, "points": scorer.points,
            "corpus": repr(corpus), "fingerprint": view.fingerprint()}
    return PLNDResult(list(corpus.groups), scorer.counts, scorer.n_docs, meta)


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
    scorer = _Scorer(view, sites, dict.fromkeys(sites, 1.0), variant, len(corpus.groups))
    scorer.kept = {s: [] for s in sites}
    rows: list[torch.Tensor] = []

    def finish(batch: Batch) -> None:
        for site in sites:
            scorer.kept[site].append(torch.stack(
                [scorer.pending[site, layer].cpu() for layer in range(view.n_layers)], 1))
        rows.append(batch.rows)
        scorer.finish(batch)

    run_batches(view, tokenized, _checks.positive_int(batch_size, "batch_size"),
                stop_at=scorer.stop_at, fwd_hooks=scorer.hooks(), start=scorer.start,
                finish=finish, progress=progress, desc="plnd scores")
    return {s: torch.cat(scorer.kept[s]) for s in sites}, torch.cat(rows)


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


def _fractions(top_fraction: Any, sites: tuple[str, ...]) -> dict[str, float]:
    if top_fraction is None:
        return {s: PAPER_TOP_FRACTION[s] for s in sites}
    if isinstance(top_fraction, Mapping):
        missing = [s for s in sites if s not in top_fraction]
        if missing:
            raise ParameterError(
                f"top_fraction gives no value for {missing}; give one per site, or one number.")
        return {s: _checks.rate(top_fraction[s], f"top_fraction[{s!r}]") for s in sites}
    value = _checks.rate(top_fraction, "top_fraction")
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


class _Scorer:
    """The hooks of one PLND run and the per-group activation counts they feed."""

    def __init__(self, view: ModelView, sites: tuple[str, ...], fractions: dict[str, float],
                 variant: str, n_groups: int) -> None:
        self.view, self.sites, self.variant = view, sites, variant
        self.widths = {s: get_site(view, s).width for s in sites}
        self.top = {}
        for s in sites:
            self.top[s] = round(fractions[s] * self.widths[s])
            if self.top[s] < 1:
                raise ParameterError(
                    f"top_fraction={fractions[s]!r} activates no unit of site {s!r} "
                    f"({self.widths[s]} units per layer); use at least {1 / self.widths[s]:.3g}.")
        n_layers = view.n_layers
        self.counts = {s: torch.zeros(n_groups, n_layers, self.widths[s], dtype=torch.int64)
                       for s in sites}
        self.n_docs = torch.zeros(n_groups, dtype=torch.int64)
        self.points = self._points()
        self.pending: dict[tuple[str, int], torch.Tensor] = {}
        self.captured: dict[int, dict[str, torch.Tensor]] = {}
        self.scales: dict[int, float] = {}
        self.counted: torch.Tensor | None = None
        self.kept: dict[str, list[torch.Tensor]] | None = None
        self.w_out_norm: dict[int, torch.Tensor] = {}
        if "mlp" in sites and variant == "paper":
            for layer in range(n_layers):
                self.w_out_norm[layer] = self._w_out(layer).float().norm(dim=1)
        last = n_layers - 1
        self.stop_at = view.hook_name(last, self.points["mlp"] if "mlp" in sites else
                                      "attn.hook_z")

    def _points(self) -> dict[str, str]:
        hooks = self.view.model.hook_dict
        points = {"mlp": "mlp.hook_post"}
        if self.variant == "reference-code":
            points["mlp"] = "mlp.hook_pre_linear" if self.view.gated else "mlp.hook_pre"
        rot = all(f"blocks.0.attn.hook_rot_{x}" in hooks for x in "qk")
        points["q"], points["k"] = (("attn.hook_rot_q", "attn.hook_rot_k") if rot
                                    else ("attn.hook_q", "attn.hook_k"))
        points.update(v="attn.hook_v", scores="attn.hook_attn_scores", z="attn.hook_z")
        return points

    def _w_out(self, layer: int) -> torch.Tensor:
        w_out = getattr(getattr(self.view.model.blocks[layer], "mlp", None), "W_out", None)
        if not isinstance(w_out, torch.Tensor) or tuple(w_out.shape) != (
                self.view.d_mlp, self.view.d_model):
            raise UnsupportedModelError(
                f"PLND's MLP score needs W_out [d_mlp, d_model] of block {layer}; "
                f"{self.view.architecture} does not expose it. Use variant='reference-code' or "
                "sites without 'mlp'.")
        return w_out.detach()

    def hooks(self) -> list[tuple[str, Any]]:
        """``(hook name, fn)`` for every layer and needed point."""
        out = []
        qk = any(s in self.sites for s in ("attn.q", "attn.k"))
        for layer in range(self.view.n_layers):
            if "mlp" in self.sites:
                out.append((self.view.hook_name(layer, self.points["mlp"]), self._mlp(layer)))
            if "attn.v" in self.sites:
                out.append((self.view.hook_name(layer, self.points["z"]), self._v(layer)))
            if qk:
                for key in ("q", "k", "v", "scores"):
                    out.append((self.view.hook_name(layer, self.points[key]),
                                self._capture(layer, key)))
        return out

    def start(self, batch: Batch) -> None:
        """Before a pass: forget the last pass's partial results."""
        self.pending.clear()
        self.captured.clear()
        self.counted = batch.counted

    def finish(self, batch: Batch) -> None:
        """After a whole pass: commit each document's top units into its group's counts."""
        rows = batch.rows
        for (site, layer), score in self.pending.items():
            order = torch.sort(score.cpu(), dim=1, descending=True, stable=True).indices
            flags = torch.zeros_like(score, dtype=torch.int64, device="cpu")
            flags.scatter_(1, order[:, :self.top[site]], 1)
            self.counts[site][:, layer].index_add_(0, rows, flags)
        self.n_docs.index_add_(0, rows, torch.ones_like(rows))
        self.pending.clear()

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        assert self.counted is not None
        return self.counted.to(x.device)

    def _mlp(self, layer: int) -> Any:
        def hook(x: torch.Tensor, hook: Any) -> None:
            self._width(x, "mlp", layer)
            if self.variant == "paper":
                score = scores.ffn_scores(x, self._mask(x), self.w_out_norm[layer])
            else:
                score = scores.ffn_reference(x, self._mask(x))
            self.pending["mlp", layer] = score
        return hook

    def _v(self, layer: int) -> Any:
        def hook(z: torch.Tensor, hook: Any) -> None:
            self._heads(z, layer, self.view.n_heads)
            self.pending["attn.v", layer] = scores.v_scores(
                z, self._mask(z), self.view.n_kv_heads, self.variant)
        return hook

    def _capture(self, layer: int, key: str) -> Any:
        def hook(x: torch.Tensor, hook: Any) -> None:
            got = self.captured.setdefault(layer, {})
            got[key] = x
            if len(got) == 4:
                self._qk(layer, self.captured.pop(layer))
        return hook

    def _qk(self, layer: int, got: dict[str, torch.Tensor]) -> None:
        q, k, v, s = got["q"], got["k"], got["v"], got["scores"]
        self._heads(q, layer, self.view.n_heads)
        self._heads(k, layer, self.view.n_kv_heads)
        self._heads(v, layer, self.view.n_kv_heads)
        if layer not in self.scales:
            where = f"{self.points['q']}/{self.points['k']}"
            self.scales[layer] = scores.fit_scale(q, k, s, where)
        q_score, k_score = scores.qk_scores(q, k, v, s, self._mask(q), self.scales[layer],
                                            self.variant)
        if "attn.q" in self.sites:
            self.pending["attn.q", layer] = q_score
        if "attn.k" in self.sites:
            self.pending["attn.k", layer] = k_score

    def _width(self, x: torch.Tensor, site: str, layer: int) -> None:
        if x.shape[-1] != self.widths[site]:
            raise HookShapeError(
                f"Block {layer}'s {self.points['mlp']} gave width {x.shape[-1]}, but the MLP "
                f"has {self.widths[site]} units (a TransformerLens adapter gap).")

    def _heads(self, x: torch.Tensor, layer: int, heads: int) -> None:
        if x.dim() != 4 or x.shape[2] != heads or x.shape[3] != self.view.d_head:
            raise HookShapeError(
                f"An attention hook of block {layer} gave shape {tuple(x.shape)}, expected "
                f"[batch, pos, {heads}, {self.view.d_head}] (a TransformerLens adapter gap).")
