"""Language directions in the residual stream: the baselines a language-neuron claim is held to.

A *direction* is one unit vector per layer in the residual stream (``blocks.{l}.hook_resid_post``,
``d_model`` dimensions) pointing from other languages towards a target language. Two are built:

* **difference in means** (:func:`diffmean_directions`): ``mu_target - mean of the other groups'
  mu``, from the per-group means :func:`lensneurons.collect` keeps on the ``"resid"`` site (each
  other group weighs the same, whatever its number of tokens);
* **PCA** (:func:`pca_directions`): among the leading principal components of the per-sequence
  mean residual vectors of all groups, the one that separates the target's sequences from the
  others' best (largest gap of projected means over their pooled standard deviation), signed to
  point towards the target.

Steering with a direction is an ordinary TL hook (:func:`lensneurons.add_direction`), whose
strength is in units of the residual stream's RMS norm at that layer (:attr:`Directions.resid_norm`,
measured on the same corpus), so one strength means the same push in every layer and model.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> corpus = ln.Corpus.from_texts(ln.organism.texts("heldout"))
    >>> stats = ln.collect(model, corpus, site="resid", progress=False)
    >>> fr = ln.diffmean_directions(stats, "fr")
    >>> fr.vectors.shape == (model.cfg.n_layers, model.cfg.d_model)
    True
    >>> round(float(fr.vectors[0].norm()), 4)
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import torch
from jaxtyping import Float

from lensneurons.core import checks as _checks
from lensneurons.core.figures import axes
from lensneurons.core.model import ModelView
from lensneurons.core.result import Result
from lensneurons.core.sites import get_site
from lensneurons.corpora.corpus import Batch, Corpus
from lensneurons.errors import (
    ParameterError,
    ShapeMismatchError,
    TooFewGroupsError,
    UnknownGroupError,
    UnknownSiteError,
)
from lensneurons.stats.activation_stats import ActivationStats
from lensneurons.stats.passes import Passes, forward, split

Method = Literal["diffmean", "pca"]


@dataclass
class Directions(Result):
    """One unit direction per layer of the residual stream, from ``against`` towards ``target``.

    Attributes:
        target: the group the directions point to.
        against: the groups they point away from.
        method: ``"diffmean"`` or ``"pca"``.
        vectors: unit vectors, ``[layer, d_model]`` (float32).
        gap: per layer, how far the target lies from the others along the direction: the norm
            of the difference of means (``"diffmean"``), or the gap of the projected means
            (``"pca"``).
        resid_norm: per layer, the RMS norm of the residual stream over the counted tokens of
            every group of the statistics or corpus; :func:`lensneurons.add_direction` scales
            its strength by it.
        details: per layer, what the method adds (PCA: the component chosen, its share of the
            variance, and the separation in pooled standard deviations).
        fingerprint: the model the directions were made on.
    """

    target: str
    against: list[str]
    method: str
    vectors: Float[torch.Tensor, "layer d_model"]
    gap: Float[torch.Tensor, " layer"]
    resid_norm: Float[torch.Tensor, " layer"]
    details: pd.DataFrame = field(default_factory=pd.DataFrame)
    fingerprint: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.vectors.dim() != 2 or self.gap.shape != self.vectors.shape[:1] or (
                self.resid_norm.shape != self.vectors.shape[:1]):
            raise ParameterError(
                "Directions need vectors [layer, d_model] and one gap and residual norm per "
                f"layer; got {tuple(self.vectors.shape)}, {tuple(self.gap.shape)} and "
                f"{tuple(self.resid_norm.shape)}.")
        for name in ("vectors", "gap", "resid_norm"):
            if not torch.isfinite(getattr(self, name)).all():
                raise ParameterError(
                    f"Directions hold NaN or inf in {name}; steering with them would make every "
                    "logit NaN. Make them again from finite statistics "
                    "(ln.diffmean_directions / ln.pca_directions).")

    @property
    def n_layers(self) -> int:
        """Layers the directions cover (the model's blocks)."""
        return int(self.vectors.shape[0])

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        return int(self.vectors.shape[1])

    def table(self) -> pd.DataFrame:
        """Per layer: the gap, the residual norm, their ratio, and the cosine with the layer before.

        The relative gap (gap over residual norm) is how far apart the languages sit, in units
        of the stream's own size; the cosine shows where the direction stays the same.
        """
        unit = self.vectors.double()
        cos = torch.full((self.n_layers,), float("nan"), dtype=torch.float64)
        cos[1:] = (unit[1:] * unit[:-1]).sum(-1)
        table = pd.DataFrame({
            "gap": self.gap.double().numpy(),
            "resid_norm": self.resid_norm.double().numpy(),
            "relative_gap": (self.gap.double() / self.resid_norm.double()).numpy(),
            "cos_previous": cos.numpy(),
        }, index=pd.RangeIndex(self.n_layers, name="layer"))
        return table.join(self.details) if len(self.details) else table

    def plot(self, ax: Any = None) -> Any:
        """The relative gap per layer (where the target sits apart from the others)."""
        fig, ax = axes(ax, (6.5, 3.6))
        table = self.table()
        ax.plot(table.index, table["relative_gap"], marker="o",
                label=f"{self.method}: {self.target} vs {', '.join(self.against)}")
        ax.set_xlabel("layer")
        ax.set_ylabel("gap / RMS residual norm")
        ax.set_title(f"{self.method} direction towards {self.target}, per layer")
        ax.legend(fontsize="small")
        fig.tight_layout()
        return fig

    def summary_line(self) -> str:
        """One line for the notebook view."""
        best = int(torch.argmax(self.gap / self.resid_norm))
        return (f"Directions ({self.method}) towards {self.target!r} against {self.against}: "
                f"{self.n_layers} layers x {self.d_model}; largest relative gap at layer {best}")

    def check_model(self, model: Any) -> None:
        """Raise unless ``model`` has this shape (and, when recorded, these weights).

        Raises:
            ShapeMismatchError, ModelMismatchError: another model.
        """
        view = model if isinstance(model, ModelView) else ModelView(model)
        if (view.n_layers, view.d_model) != tuple(self.vectors.shape):
            raise ShapeMismatchError(
                f"These directions are {self.n_layers} layers x {self.d_model} wide, the model "
                f"has {view.n_layers} layers x {view.d_model}. Make the directions on this "
                "model (ln.collect(model, corpus, site='resid'), then ln.diffmean_directions).")
        self._check_model(view)


def _groups(groups: Sequence[str], target: str, against: str | Sequence[str] | None,
            ) -> list[str]:
    if not isinstance(target, str) or target not in groups:
        raise UnknownGroupError(f"No group {target!r}; the data hold {list(groups)}.")
    if against is None:
        others = [g for g in groups if g != target]
    else:
        others = [against] if isinstance(against, str) else list(against)
        missing = [g for g in others if g not in groups]
        if missing:
            raise UnknownGroupError(f"No group {missing}; the data hold {list(groups)}.")
        if target in others:
            raise ParameterError(f"against= must not hold the target {target!r} itself.")
    if not others:
        raise TooFewGroupsError(
            f"A direction towards {target!r} needs another group to point away from, but the "
            f"data hold only {list(groups)}. Collect at least two groups.")
    return others


def diffmean_directions(stats: ActivationStats, target: str,
                        against: str | Sequence[str] | None = None) -> Directions:
    """Difference-in-means directions: ``mu_target - mean(mu_other)`` per layer, normalised.

    Args:
        stats: statistics of the ``"resid"`` site with sums
            (``ln.collect(model, corpus, site="resid")``).
        target: the group to point towards.
        against: the groups to point away from (one name or several); default every other
            group. Each weighs the same.

    Raises:
        UnknownSiteError: statistics of another site than ``"resid"``.
        MissingStatisticError: statistics without sums (``value_stats=False``).
        UnknownGroupError, TooFewGroupsError, ParameterError: groups that do not fit.
    """
    if not isinstance(stats, ActivationStats):
        raise ParameterError(f"diffmean_directions reads ActivationStats, got "
                             f"{type(stats).__name__}.")
    if stats.site != "resid":
        raise UnknownSiteError(
            f"Residual directions need statistics of the 'resid' site, these are of "
            f"{stats.site!r}. Collect them with ln.collect(model, corpus, site='resid'); for "
            "neurons use ln.steer(..., method='diffmean').")
    others = _groups(stats.groups, target, against)
    mu_target = stats.mean(target).double()
    mu_others = torch.stack([stats.mean(g).double() for g in others]).mean(0)
    difference = mu_target - mu_others
    gap = difference.norm(dim=-1)
    if not (gap > 0).all():
        raise ParameterError(
            f"The means of {target!r} and {others} are equal in layers "
            f"{torch.nonzero(gap == 0).flatten().tolist()}: no direction separates them there.")
    assert stats.sum_sq is not None  # stats.mean refused statistics without sums
    resid_norm = (stats.sum_sq.sum(0).sum(-1) / stats.n_tokens.sum().double()).sqrt()
    return Directions(target=target, against=others, method="diffmean",
                      vectors=(difference / gap[:, None]).float(), gap=gap.float(),
                      resid_norm=resid_norm.float(),
                      fingerprint=dict(stats.meta.get("fingerprint") or {}))


class _SequenceMeans:
    """The per-sequence mean residual vector of every layer, and the summed squared norms."""

    def __init__(self, view: ModelView) -> None:
        self.site = get_site(view, "resid")
        self.kept: list[tuple[torch.Tensor, torch.Tensor]] = []  # rows' groups, [row, L, D]
        self.square = torch.zeros(view.n_layers, dtype=torch.float64)
        self.tokens = 0
        self._means: list[torch.Tensor] = []
        self._squares: list[torch.Tensor] = []
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]] = []
        self._batch: Batch | None = None

    def hooks(self) -> list[tuple[str, Any]]:
        return [(self.site.read_hook(layer), self._read) for layer in range(self.site.n_layers)]

    def _read(self, x: torch.Tensor, *, hook: Any) -> None:
        assert self._batch is not None
        weights = self._batch.counted.to(device=x.device, dtype=torch.float32)
        x = x.float()
        per_row = weights.sum(1).clamp(min=1)
        # stays on the layer's device; finish() moves the piece to the CPU once, not per layer
        self._means.append(torch.einsum("bp,bpd->bd", weights, x) / per_row[:, None])
        self._squares.append((x.pow(2).sum(-1) * weights).sum().double())

    def start(self, piece: Batch) -> None:
        self._batch, self._means, self._squares = piece, [], []

    def finish(self, piece: Batch) -> None:
        means = torch.stack([m.cpu() for m in self._means], dim=1)  # [row, layer, d_model]
        squares = torch.stack([q.cpu() for q in self._squares])
        self._pending.append((piece.rows, means, squares, int(piece.counted.sum())))
        self.abort()

    def abort(self) -> None:
        self._batch, self._means, self._squares = None, [], []

    def commit(self) -> None:
        for rows, means, squares, tokens in self._pending:
            self.kept.append((rows, means))
            self.square += squares
            self.tokens += tokens
        self._pending = []

    def rollback(self) -> None:
        self._pending = []
        self.abort()


def pca_directions(model: Any, corpus: Corpus, target: str | Sequence[str],
                   against: str | Sequence[str] | None = None, *, n_components: int = 10,
                   batch_size: int = 8, progress: bool = True,
                   ) -> Directions | dict[str, Directions]:
    """PCA directions: the principal component that best separates ``target`` from the others.

    One forward pass over ``corpus`` reads the residual stream after every block and keeps, per
    sequence, its mean over counted tokens. Per layer, the sequences of ``target`` and
    ``against`` are centred together; among their ``n_components`` leading principal
    components the one whose projections separate the target's sequences from the others'
    best (gap of the means over the pooled standard deviation; the others' mean is the mean of
    their group means) is kept, signed to point towards the target.

    Args:
        model: a TransformerLens model.
        corpus: texts per group, several sequences per group (each sequence is one sample).
        target: the group to point towards; several groups (a list) share the one pass and
            give ``{group: Directions}``.
        against: the groups to point away from; default every other group.
        n_components: leading components searched per layer.
        batch_size: sequences per forward pass.
        progress: show a progress bar.

    Raises:
        UnknownGroupError, TooFewGroupsError, ParameterError: groups that do not fit, fewer
            than two sequences in a group used, a bad ``n_components``.

    Examples:
        >>> import lensneurons as ln
        >>> model = ln.organism.load()
        >>> corpus = ln.Corpus.from_texts(ln.organism.texts("heldout"))
        >>> fr = ln.pca_directions(model, corpus, "fr", progress=False)
        >>> fr.method, fr.details.columns.tolist()
        ('pca', ['component', 'explained_variance', 'separation'])
        >>> both = ln.pca_directions(model, corpus, ["fr", "de"], progress=False)
        >>> sorted(both), bool((both["fr"].vectors == fr.vectors).all())
        (['de', 'fr'], True)
    """
    n_components = _checks.positive_int(n_components, "n_components")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    targets = [target] if isinstance(target, str) else list(target)
    if not targets:
        raise ParameterError("target must name a group, or a list of one or more groups.")
    groups = {t: _groups(corpus.groups, t, against) for t in targets}
    view = ModelView(model)
    tokenized = corpus.tokenize(view)
    work = _SequenceMeans(view)
    last = work.site.read_hook(view.n_layers - 1)
    with Passes(view, work, forward(view, last), total=tokenized.n_batches(batch_size),
                desc="pca directions", progress=progress, split=split,
                fwd_hooks=work.hooks()) as passes:
        for batch in tokenized.batches(batch_size):
            passes.batch(batch)
            passes.advance()
    rows = torch.cat([r for r, _ in work.kept])
    means = torch.cat([m for _, m in work.kept]).double()  # [sequence, layer, d_model]
    resid_norm = (work.square / max(work.tokens, 1)).sqrt().float()
    counts = {g: int((rows == i).sum()) for i, g in enumerate(corpus.groups)}
    few = sorted({g for t, others in groups.items() for g in [t, *others] if counts[g] < 2})
    if few:
        raise ParameterError(
            f"PCA directions need at least two sequences per group; {few} have fewer. Give "
            "more texts (each text is at least one sequence).")
    found = {t: _pca(means, rows, [corpus.groups.index(g) for g in [t, *others]], n_components,
                     view, t, others, resid_norm) for t, others in groups.items()}
    return found[target] if isinstance(target, str) else found


def _pca(means: torch.Tensor, rows: torch.Tensor, used: list[int], n_components: int,
         view: ModelView, target: str, others: list[str], resid_norm: torch.Tensor,
         ) -> Directions:
    """The PCA directions of one target from the per-sequence means of every group."""
    keep = torch.isin(rows, torch.tensor(used))
    rows, means = rows[keep], means[keep]
    is_target = rows == used[0]
    vectors, gaps, chosen = [], [], []
    for layer in range(view.n_layers):
        x = means[:, layer]
        centred = x - x.mean(0)
        _, singular, basis = torch.linalg.svd(centred, full_matrices=False)
        k = min(n_components, basis.shape[0])
        projected = centred @ basis[:k].T  # [sequence, k]
        target_mean = projected[is_target].mean(0)
        other_means = torch.stack([projected[rows == i].mean(0) for i in used[1:]])
        gap = target_mean - other_means.mean(0)
        spread = ((projected[is_target].var(0) + projected[~is_target].var(0)) / 2).sqrt()
        separation = gap.abs() / spread.clamp(min=1e-12)
        best = int(torch.argmax(separation))
        sign = 1.0 if gap[best] >= 0 else -1.0
        vectors.append(sign * basis[best])
        gaps.append(gap[best].abs())
        variance = singular.pow(2)
        chosen.append((best, float(variance[best] / variance.sum()), float(separation[best])))
    details = pd.DataFrame(chosen, columns=["component", "explained_variance", "separation"],
                           index=pd.RangeIndex(view.n_layers, name="layer"))
    return Directions(target=target, against=others, method="pca",
                      vectors=torch.stack(vectors).float(), gap=torch.stack(gaps).float(),
                      resid_norm=resid_norm, details=details, fingerprint=view.fingerprint())
