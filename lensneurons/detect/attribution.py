"""Gradient attribution of units (CULNIG, Yamamoto et al.): ``a · ∂P(y|x)/∂a``, batched.

For an item ``(x, y)`` (a prompt and the first token of its answer), a site's unit ``n`` of layer
``l`` and a prompt position ``i`` with activation ``a = a[l, n, i]``::

    s_i(x, y)  = a · ∂P(y | x) / ∂a               first-order estimate of P(y|x) − P(y|x, a := 0)
    s(x, y)    = P(y | x) · max_i s_i(x, y)       max over the prompt's real (non-pad) positions
    score[l,n] = (1 / |D|) · Σ_{(x,y) in D} s(x, y)

``P(y | x)`` is read at the last prompt position. With ``objective="logprob"`` the derivative is of
``log P(y | x)`` and the item score is not weighted again: ``s = max_i a · ∂log P / ∂a``.

The activations ``a`` are read where the sites read them (``docs/design.md`` §4): ``"mlp"`` at
``mlp.hook_pre`` (the gate pre-activation of gated MLPs, the pre-activation otherwise; zeroing it
silences the unit since ``act(0) = 0``), ``"attn.q"``/``"attn.k"``/``"attn.v"`` at
``attn.hook_q``/``hook_k``/``hook_v`` with heads flattened (keys and values in kv-head space).

How the gradient is taken: each read hook returns ``a + δ`` with ``δ`` a zero leaf tensor that
requires grad, and ``torch.autograd.grad(Σ_batch P, δs)`` gives ``∂P/∂a`` for every unit and
position of every hooked layer in one backward pass per batch. No parameter gradient is computed or
accumulated (``.grad`` of the weights is never touched), and the model's weights need not
require grad: the pass enables autograd itself, also inside ``torch.no_grad()`` or
``torch.inference_mode()``. Batches are right-padded: with causal attention real positions never
see the padding, and padded positions are excluded from the max. The forward pass stops at the
last block's output; only the rows' last prompt positions go through the final norm and unembedding.
The batches (longest prompts first) run through the package's batch loop
(:class:`lensneurons.stats.passes.Passes`): a batch that runs out of memory is split and retried.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> items = [ln.detect.AttributionItem("The capital of France is", " Paris")]
    >>> scores = ln.attribution(model, items, sites=("mlp",), progress=False)
    >>> scores["mlp"].shape, scores.n_items
    (torch.Size([4, 2048]), 1)
    >>> len(scores.neuron_sets(top_rate=0.01, site="mlp")["top"])
    82
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView
from lensneurons.core.result import Result
from lensneurons.core.sites import SITES, Site, get_site
from lensneurons.corpora.items import AttributionItem
from lensneurons.detect._attribution_items import encode, pad_id
from lensneurons.detect._common import highest, layer_bars, n_selected
from lensneurons.errors import (
    CorruptResultError,
    GradientUnavailableError,
    ParameterError,
    UnknownSiteError,
)
from lensneurons.lens.readout import readout_fn
from lensneurons.neurons import NeuronSet, NeuronSets
from lensneurons.stats.passes import Passes

__all__ = ["AttributionItem", "AttributionScores", "attribution"]

#: What the gradient is taken of: the answer's probability (CULNIG) or its log-probability.
OBJECTIVES = ("prob", "logprob")
#: The name of ``objective`` in saved folders (the file format's key, read by every version).
_LEGACY_OBJECTIVE = "target"
DEFAULT_SITES = ("mlp", "attn.q", "attn.k", "attn.v")


class _Stop(Exception):
    """Raised by the last hook to end the forward pass after the last block."""


class AttributionScores(Result):
    """Per-unit attribution scores ``[layer, unit]`` per site, averaged over items.

    A result (:class:`~lensneurons.core.result.Result`): ``table()`` (score mass per site and
    layer), ``plot()`` (each site's share of positive score mass per layer), ``save`` / ``load``
    (the folder ``attribution.safetensors`` + ``attribution.json``), and
    ``neuron_sets(top_rate, site=)``, the highest-scoring units.

    Args:
        scores: per site, a float tensor ``[layer, unit]``.
        n_items: how many items were averaged.
        meta: provenance (``objective``, model fingerprint, ...).

    Examples:
        >>> import torch
        >>> s = AttributionScores({"mlp": torch.tensor([[0.0, 3.0], [2.0, 1.0]])}, n_items=5)
        >>> s.neuron_sets(top_rate=0.5, site="mlp")["top"].mask.tolist()
        [[False, True], [True, False]]
        >>> s.table()["mass"].tolist()
        [3.0, 3.0]
    """

    kind = "attribution"

    def __init__(
        self, scores: dict[str, Float[torch.Tensor, "layer unit"]], *, n_items: int,
        meta: dict[str, Any] | None = None,
    ) -> None:
        _checks.mapping(scores, "scores", "{site: [layer, unit] tensor}")
        if not scores:
            raise ParameterError("AttributionScores needs at least one site.")
        for site, tensor in scores.items():
            if site not in SITES:
                raise UnknownSiteError(f"Unknown site {site!r}; known sites: {', '.join(SITES)}.")
            if not isinstance(tensor, torch.Tensor) or tensor.dim() != 2:
                raise ParameterError(f"Scores of site {site!r} must be a [layer, unit] tensor.")
        self.scores = {site: t.detach().to(torch.float64).cpu() for site, t in scores.items()}
        self.n_items = _checks.positive_int(n_items, "n_items")
        self.meta = dict(meta or {})

    @property
    def sites(self) -> list[str]:
        """The scored sites, in order."""
        return list(self.scores)

    def __getitem__(self, site: str) -> Float[torch.Tensor, "layer unit"]:
        if site not in self.scores:
            raise UnknownSiteError(f"No scores for site {site!r}; scored sites: {self.sites}.")
        return self.scores[site]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{s}: {tuple(t.shape)}" for s, t in self.scores.items())
        return f"AttributionScores({shapes}; {self.n_items} items, {self.meta.get('objective')})"

    def summary_line(self) -> str:
        """One line for the notebook view."""
        return repr(self)

    def neuron_sets(self, top_rate: float = 0.01, *, site: str = "mlp") -> NeuronSets:
        """The ``round(top_rate · layers · units)`` highest-scoring units of ``site``.

        The scores hold one group (the items they were averaged over), so the sets hold one set,
        named by ``meta["group"]`` when the scores record it, ``"top"`` otherwise; ties go to the
        lower flat index (deterministic).

        Raises:
            ParameterError: ``top_rate`` is not in ``(0, 1]`` or selects no unit.
            UnknownSiteError: ``site`` was not scored.

        Examples:
            >>> import torch
            >>> s = AttributionScores({"mlp": torch.tensor([[1.0, 4.0, 2.0, 3.0]])}, n_items=1)
            >>> s.neuron_sets(top_rate=0.5)["top"].indices[0].tolist()
            [1, 3]
        """
        top_rate = _checks.rate(top_rate, "top_rate")
        scores = self[site]
        mask = highest(scores, n_selected(top_rate, scores.numel(), "AttributionScores"))
        fingerprint = self.meta.get("fingerprint")
        meta = {"method": "attribution", "top_rate": top_rate, "site": site,
                "objective": self.meta.get("objective"), "n_items": self.n_items,
                **({"fingerprint": fingerprint} if fingerprint else {})}
        group = str(self.meta.get("group", "top"))
        return NeuronSets({group: NeuronSet.from_mask(mask, site=site,
                                                      gated=self.meta.get("gated"))}, meta)

    def table(self) -> pd.DataFrame:
        """Score mass per site and layer (rows).

        Columns: ``mass``, the sum of the layer's positive scores; ``share``, the layer's part of
        its site's mass; ``negative``, the sum of the negative scores; ``max``, the highest score.
        """
        frames = []
        for site, scores in self.scores.items():
            mass = scores.clamp(min=0).sum(1)
            total = float(mass.sum())
            frames.append(pd.DataFrame({
                "mass": mass.numpy(),
                "share": (mass / total).numpy() if total > 0 else 0.0 * mass.numpy(),
                "negative": scores.clamp(max=0).sum(1).numpy(),
                "max": scores.amax(1).numpy(),
            }, index=pd.MultiIndex.from_product([[site], range(scores.shape[0])],
                                                names=["site", "layer"])))
        return pd.concat(frames)

    def plot(self, ax: Any = None) -> Any:
        """Each site's share of positive score mass per layer: where the answers' units are."""
        share = self.table()["share"].unstack("layer").reindex(self.sites)
        return layer_bars(share, ax=ax, ylabel="share of positive score mass", legend="site",
                          title=f"Attribution score mass per layer ({self.n_items} items)")

    # -- storage: attribution.safetensors (one tensor per site) + attribution.json ------------
    def _check_model(self, model: Any) -> None:
        if "fingerprint" in self.meta:
            ModelView(model).check_fingerprint(self.meta["fingerprint"], "These attribution scores")

    def _record(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        meta = dict(self.meta)
        if "objective" in meta:  # the key of the file format (read by every version)
            meta[_LEGACY_OBJECTIVE] = meta.pop("objective")
        return dict(self.scores), {**meta, "sites": self.sites, "n_items": self.n_items}

    @classmethod
    def _from_record(cls, tensors: dict[str, torch.Tensor],
                     meta: dict[str, Any]) -> AttributionScores:
        meta = dict(meta)
        sites, n_items = meta.pop("sites", None), meta.pop("n_items", None)
        if not isinstance(sites, list) or set(sites) != set(tensors) or not isinstance(
                n_items, int):
            raise CorruptResultError(
                "These attribution scores are damaged: their sites and tensors disagree. "
                "Compute and save them again."
            )
        if _LEGACY_OBJECTIVE in meta:
            meta["objective"] = meta.pop(_LEGACY_OBJECTIVE)
        return cls({s: tensors[s] for s in sites}, n_items=n_items, meta=meta)


def attribution(
    model: Any,
    items: Sequence[AttributionItem | tuple[str, str | int]],
    *,
    sites: Sequence[str] = DEFAULT_SITES,
    objective: str = "prob",
    clamp_negative: bool = False,
    batch_size: int = 8,
    progress: bool = True,
) -> AttributionScores:
    """Attribution scores ``a · ∂P(y|x)/∂a``, max over positions, × P(y), averaged over items.

    The formula, per item ``(x, y)``, unit ``n`` of layer ``l``, prompt position ``i``::

        score[l, n] = mean over items of  P(y|x) · max_i ( a[l,n,i] · ∂P(y|x)/∂a[l,n,i] )

    (``objective="logprob"``: ``max_i a · ∂log P(y|x)/∂a``, not weighted by ``P``). Each term is the
    first-order estimate of how much ``P(y|x)`` falls when the unit is zeroed at that position.

    Args:
        model: a TransformerLens model (``HookedTransformer`` or ``TransformerBridge``).
        items: :class:`AttributionItem` objects or ``(prompt, answer)`` pairs; ``y`` is the
            answer's first token, ``P(y|x)`` is read after the prompt's last token. An answer
            may be a token id instead: a Python, numpy or 0-d torch integer.
        sites: which units to score (``"mlp"``, ``"attn.q"``, ``"attn.k"``, ``"attn.v"``).
        objective: what the gradient is taken of: ``"prob"``, ``P(y|x)`` (CULNIG), or
            ``"logprob"``, ``log P(y|x)``.
        clamp_negative: replace each item's score by ``max(s, 0)`` before averaging (CULNIG
            does so for its control items).
        batch_size: items per forward/backward pass.
        progress: show a progress bar over batches.

    Returns:
        The scores per site, ``[layer, unit]`` in float64, with the model's fingerprint.

    Raises:
        EmptyGroupError: no items.
        InvalidTextError: a prompt or answer is not a string (or an answer not a token id).
        EmptyTokenizationError: an answer tokenizes to nothing, or a prompt to no token at all.
        VocabularyError: an answer id is outside the vocabulary or is the unknown token.
        ContextLengthError: a prompt is longer than the model's context.
        ParameterError: unknown ``objective``, bad ``batch_size``.
        UnknownSiteError: an unknown site, or one the model has no hook for.
        GradientUnavailableError: the model's weights are inference tensors.
        InsufficientMemoryError: a single item does not fit in the device's memory.

    Examples:
        >>> import lensneurons as ln
        >>> model = ln.organism.load()
        >>> s = ln.attribution(model, [("Le chat", " dort")], sites=("attn.v",), progress=False)
        >>> s.sites, s["attn.v"].shape[0]
        (['attn.v'], 4)
    """
    if objective not in OBJECTIVES:
        raise ParameterError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    clamp_negative = _checks.flag(clamp_negative, "clamp_negative")
    progress = _checks.flag(progress, "progress")
    if isinstance(sites, str):
        sites = (sites,)
    if not sites or len(set(sites)) != len(sites):
        raise ParameterError(f"sites must name one or more distinct sites, got {sites!r}.")
    view = ModelView(model)
    site_objs = [get_site(view, name) for name in sites]
    for site in site_objs:
        site.read_hook(0)  # an adapter without the hook point fails here, before any pass
    encoded = encode(view, _plain_answers(items))
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    pad = pad_id(view)
    starts = range(0, len(order), batch_size)
    work = _Work(view, site_objs, objective, clamp_negative)
    # grad=True works under no_grad and inference_mode; the batches are made inside it.
    with Passes(view, work, work.run, total=len(starts), desc="attribution", progress=progress,
                split=_Items.split, grad=True) as passes:
        for lo in starts:
            passes.batch(_Items.pad([encoded[r] for r in order[lo:lo + batch_size]], pad))
            passes.advance()
    meta = {"objective": objective, "clamp_negative": clamp_negative, "gated": view.gated,
            "fingerprint": view.fingerprint(), "method": "attribution"}
    totals = {site: torch.stack([layer.cpu() for layer in per_layer]) / len(encoded)
              for site, per_layer in work.totals.items()}  # to the CPU once, at the end
    return AttributionScores(totals, n_items=len(encoded), meta=meta)


def _plain_answers(items: Any) -> Any:
    """``items`` with numpy and 0-d torch integer answers (token ids) as Python ints.

    Anything else is left as it is, for :func:`encode` to check and name.
    """
    if isinstance(items, (str, bytes, AttributionItem)) or not isinstance(items, Sequence):
        return items
    out = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2:
            prompt, answer = item
        elif isinstance(item, AttributionItem):
            prompt, answer = item.prompt, item.answer
        else:
            out.append(item)
            continue
        if not isinstance(answer, (str, int)):  # bool is an int: encode refuses it
            try:
                item = AttributionItem(prompt, _checks.integer(answer, "answer"))
            except ParameterError:
                pass  # not an integer: encode says what an answer must be
        out.append(item)
    return out


@dataclass(frozen=True)
class _Items:
    """A batch of items: right-padded prompts, their lengths and their answers' first tokens."""

    tokens: Int[torch.Tensor, "batch pos"]
    lengths: Int[torch.Tensor, " batch"]
    answers: Int[torch.Tensor, " batch"]

    @classmethod
    def pad(cls, rows: list[tuple[list[int], int]], pad_id: int) -> _Items:
        lengths = torch.tensor([len(ids) for ids, _ in rows])
        tokens = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.int64)
        for r, (ids, _) in enumerate(rows):
            tokens[r, :len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return cls(tokens, lengths, torch.tensor([y for _, y in rows]))

    def split(self, size: int) -> Iterator[_Items]:
        """Pieces of at most ``size`` items, each as wide as its longest prompt."""
        for lo in range(0, self.tokens.shape[0], size):
            lengths = self.lengths[lo:lo + size]
            yield _Items(self.tokens[lo:lo + size, :int(lengths.max())], lengths,
                         self.answers[lo:lo + size])


class _Work:
    """The passes of one attribution run and the score totals they feed (a ``Passes`` work)."""

    def __init__(self, view: ModelView, sites: list[Site], objective: str, clamp: bool) -> None:
        self.view, self.sites, self.objective, self.clamp = view, sites, objective, clamp
        # Per site, one running total per layer on that layer's device; made by the first
        # commit, inside the loop's grad mode (never inference tensors).
        self.totals: dict[str, list[torch.Tensor]] = {}
        self.current: dict[str, list[torch.Tensor]] | None = None
        self.finished: list[dict[str, list[torch.Tensor]]] = []

    def run(self, piece: _Items) -> None:
        self.current = _scores(self.view, self.sites, piece, self.objective, self.clamp)

    def start(self, piece: _Items) -> None:
        self.current = None

    def finish(self, piece: _Items) -> None:
        assert self.current is not None
        self.finished.append(self.current)

    def abort(self) -> None:
        self.current = None

    def commit(self) -> None:
        for sums in self.finished:
            for site, per_layer in sums.items():
                old = self.totals.get(site)
                self.totals[site] = per_layer if old is None else [
                    total + value for total, value in zip(old, per_layer, strict=True)]
        self.finished.clear()

    def rollback(self) -> None:
        self.finished.clear()


def _scores(view: ModelView, sites: list[Site], items: _Items, objective: str,
            clamp: bool) -> dict[str, list[torch.Tensor]]:
    """One forward and one backward pass over ``items``: per site and layer, summed item scores.

    Each layer's sum stays on that layer's device (no host copy per batch).
    """
    device = view.input_device
    tokens, lengths = items.tokens.to(device), items.lengths.to(device)
    answers = items.answers.to(device)
    rows = tokens.shape[0]
    deltas: dict[tuple[str, int], torch.Tensor] = {}
    acts: dict[tuple[str, int], torch.Tensor] = {}
    captured: list[torch.Tensor] = []

    def reader(key: tuple[str, int]) -> Any:
        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            delta = torch.zeros_like(x, requires_grad=True)
            deltas[key], acts[key] = delta, x.detach()
            return x + delta
        return hook

    def stop(x: torch.Tensor, hook: Any) -> None:
        captured.append(x)
        raise _Stop

    hooks = [(s.read_hook(layer), reader((s.name, layer)))
             for s in sites for layer in range(view.n_layers)]
    hooks.append((view.hook_name(view.n_layers - 1, "hook_resid_post"), stop))
    try:
        with view.model.hooks(fwd_hooks=hooks):
            try:
                view.model(tokens)
            except _Stop:
                pass
    except RuntimeError as err:
        if "inference" in str(err).lower():
            raise GradientUnavailableError(
                "Attribution needs gradients, but the model's weights are inference tensors "
                "(the model was loaded or converted inside torch.inference_mode()). Load it "
                "outside inference_mode; no_grad() and eval() are fine."
            ) from err
        raise
    last = captured[0][torch.arange(rows, device=device), lengths - 1]
    logits = readout_fn(view.model)(last)
    logprobs = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)
    logp = logprobs.gather(-1, answers[:, None].to(logprobs.device))[:, 0]
    prob = logp.exp()
    value = prob if objective == "prob" else logp
    keys = list(deltas)
    grads = torch.autograd.grad(value.sum(), [deltas[k] for k in keys], allow_unused=True)
    weight = prob.detach().to(torch.float64) if objective == "prob" else torch.ones_like(
        prob, dtype=torch.float64)
    sums = {s.name: [torch.zeros(s.width, dtype=torch.float64, device=view.layer_device(layer))
                     for layer in range(view.n_layers)] for s in sites}
    for key, grad in zip(keys, grads):
        site = next(s for s in sites if s.name == key[0])
        name = site.read_hook(key[1])
        grad = torch.zeros_like(acts[key]) if grad is None else grad
        per_pos = site.units(acts[key] * grad, name).to(torch.float64)
        pad = torch.arange(per_pos.shape[1], device=per_pos.device)[None, :] >= lengths[:, None].to(
            per_pos.device)
        best = per_pos.masked_fill(pad[:, :, None], -torch.inf).amax(1)
        item = best * weight.to(best.device)[:, None]
        if clamp:
            item = item.clamp(min=0)
        sums[key[0]][key[1]] += item.sum(0).to(sums[key[0]][key[1]].device)
    return sums
