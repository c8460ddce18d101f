"""The MWork view: latent-language curves with and without neuron masks, plus a stage split.

Zhao et al. (2024) propose that a multilingual model *understands* in its first layers, *solves
the task* in an English-centred middle, and *generates* in the query language in its last layers.
:func:`mwork` measures the Wendler curves once plainly and once under each intervention
(``fwd_hooks``: any list of TL hooks, e.g. ``ln.deactivate(neurons["fr"], layers=range(6, 8))``,
or a dict of named lists), keeps the per-block histogram of the neuron set, and splits the lens
depths into the three stages, either from the baseline curves (:func:`stage_split`) or from
MWork's fixed ``N1``/``N2`` (first ``N1`` blocks understand, last ``N2`` generate). Stages hold
depths: depth ``d`` is the output of block ``d - 1``.

The split from curves is descriptive, not a test: on a model without a pivot the task-solving
stage can be empty, and that is the answer.

Examples:
    >>> view = mwork(model, items, {"fr off": ln.deactivate(neurons["fr"])},  # doctest: +SKIP
    ...              neurons=neurons["fr"])
    >>> view.stages  # depths  # doctest: +SKIP
    {'understanding': [1, 2], 'task_solving': [3, 4, 5], 'generation': [6, 7, 8]}
    >>> view.plot()  # doctest: +SKIP

"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from einops import reduce
from jaxtyping import Float, Int

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView
from lensneurons.core.result import Result
from lensneurons.errors import ParameterError, ShapeMismatchError
from lensneurons.lens.latent import LatentLanguageResult, latent_language
from lensneurons.lens.prompts import LensItem

Hooks = Sequence[tuple[str | Callable[[str], bool], Any]]  # hook name or TL name filter


@dataclass
class MWorkResult(Result):
    """Baseline and intervened latent-language curves, neuron histogram and stages.

    Attributes:
        baseline: curves without interventions.
        intervened: condition name -> curves under that condition's hooks.
        layer_counts: neurons per block (block ``b`` writes depth ``b + 1``), or None.
        stages: stage name -> lens depths (``understanding``, ``task_solving``,
            ``generation``).
        fingerprint: the model's fingerprint (:meth:`ModelView.fingerprint`): ``load(path,
            model)`` refuses the result of another model.

    ``.table()`` holds the curves of every condition; ``.plot()`` the MWork view.
    """

    baseline: LatentLanguageResult
    intervened: dict[str, LatentLanguageResult]
    layer_counts: Int[torch.Tensor, " block"] | None = None
    stages: dict[str, list[int]] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict, repr=False)

    def delta(self, quantity: str, condition: str | None = None) -> Float[torch.Tensor, " depth"]:
        """Per-depth change of the mean of ``quantity`` (a language or ``"entropy"``)."""
        name = condition or next(iter(self.intervened))
        return self.intervened[name].mean(quantity) - self.baseline.mean(quantity)

    def table(self) -> pd.DataFrame:
        """The curves of every condition in one long table, with ``condition`` and ``stage``.

        Columns as :meth:`LatentLanguageResult.table` (``depth``, ``quantity``, ``mean``,
        ``lo``, ``hi``, ``n``), then ``condition`` (``"baseline"`` or a condition's name) and
        ``stage`` (the stage of the depth).
        """
        frames = [self.baseline.table().assign(condition="baseline")]
        frames += [r.table().assign(condition=name) for name, r in self.intervened.items()]
        table = pd.concat(frames, ignore_index=True)
        stage_of = {depth: s for s, depths in self.stages.items() for depth in depths}
        table["stage"] = table["depth"].map(stage_of).astype(object)
        return table

    def plot(self, ax: Any = None, *, quantities: Sequence[str] | None = None) -> Any:
        """Curves (baseline solid, interventions dashed), neuron histogram, stage shading.

        With ``ax`` the curves and stages are drawn into it (no histogram) and ``ax.figure``
        is returned.
        """
        from lensneurons.lens.plots import plot_mwork

        return plot_mwork(self, ax=ax, quantities=quantities)


def stage_split(
    curves: LatentLanguageResult | None = None,
    *,
    n_layers: int | None = None,
    n1: int | None = None,
    n2: int | None = None,
    target: str | None = None,
) -> dict[str, list[int]]:
    """Split lens depths ``1..L`` (block outputs) into understanding / task-solving / generation.

    With ``n1``/``n2`` (MWork): the first ``n1`` blocks understand, the last ``n2`` generate
    (as depths: block ``b`` is depth ``b + 1``). From curves: task solving starts where the mean
    entropy first falls below the midpoint of its range (the model commits to an answer);
    generation starts after the last depth where P(en) exceeds P(target) (or, with no such
    depth, where P(target) first reaches half its maximum). Depth 0 (embeddings) belongs to no
    stage.

    Args:
        curves: baseline :class:`LatentLanguageResult` (for the split from curves).
        n_layers: number of blocks (for the split from ``n1``/``n2`` without curves).
        n1: blocks of the understanding stage.
        n2: blocks of the generation stage.
        target: the target language; default the last measured language other than ``en``.

    Returns:
        ``{"understanding": [...], "task_solving": [...], "generation": [...]}``, lists of
        depths.

    Raises:
        ParameterError: neither curves nor ``n1``/``n2``, or ``n1``/``n2`` negative, not
            integers, or more blocks than the model has.

    >>> stage_split(n_layers=8, n1=2, n2=2)
    {'understanding': [1, 2], 'task_solving': [3, 4, 5, 6], 'generation': [7, 8]}

    """
    if n1 is not None or n2 is not None:
        total = n_layers if n_layers is not None else (max(curves.depths) if curves else None)
        if total is None:
            raise ParameterError("Pass n_layers (or curves) with n1/n2.")
        total = _checks.positive_int(total, "n_layers")
        n1 = _checks.positive_int(n1 or 0, "n1", minimum=0)
        n2 = _checks.positive_int(n2 or 0, "n2", minimum=0)
        if n1 + n2 > total:
            raise ParameterError(
                f"n1 + n2 = {n1 + n2} blocks exceed the model's {total}; they must lie in "
                f"0..{total}."
            )
        depths = list(range(1, total + 1))
        return {"understanding": depths[:n1], "task_solving": depths[n1:total - n2],
                "generation": depths[total - n2:]}
    if not isinstance(curves, LatentLanguageResult):
        raise ParameterError(
            "Pass baseline curves (a LatentLanguageResult), or n1 and n2 (with n_layers)."
        )
    depths = [depth for depth in curves.depths if depth > 0]
    index = [curves.depths.index(depth) for depth in depths]
    others = [lang for lang in curves.languages if lang != "en"]
    tgt = target or (others[-1] if others else "en")
    p_tgt = curves.mean(tgt)[index]
    p_en = curves.mean("en")[index] if "en" in curves.languages and tgt != "en" else None
    ent = curves.mean("entropy")[index]
    mid = (ent.max() + ent.min()) / 2
    u = int((ent <= mid).nonzero()[0]) if len(ent) else 0
    if p_en is not None and bool((p_en > p_tgt).any()):
        g = int((p_en > p_tgt).nonzero()[-1]) + 1
    else:
        g = int((p_tgt >= p_tgt.max() / 2).nonzero()[0])
    g = min(max(g, u), len(depths))
    return {"understanding": depths[:u], "task_solving": depths[u:g], "generation": depths[g:]}


def mwork(
    model: Any,
    items: Sequence[LensItem],
    fwd_hooks: Hooks | Mapping[str, Hooks],
    *,
    languages: Sequence[str] | None = None,
    neurons: Any = None,
    n1: int | None = None,
    n2: int | None = None,
    **lens_options: Any,
) -> MWorkResult:
    """Latent-language curves with and without interventions, neuron histogram, stages.

    Args:
        model: a TransformerLens model.
        items: latent-language prompts (:mod:`lensneurons.lens.prompts`).
        fwd_hooks: TL ``(hook_name, fn)`` pairs (one condition, ``"intervened"``), or
            condition name -> such pairs.
        languages: measured languages (default ``("en", target)``).
        neurons: a NeuronSet (its ``.mask`` ``[L, D]``), a mask, or per-block counts ``[L]``,
            for the histogram.
        n1: blocks of the understanding stage (MWork); default from the curves.
        n2: blocks of the generation stage (MWork); default from the curves.
        **lens_options: passed to :func:`latent_language` (``lens``, ``ci``, ``batch_size``).

    Returns:
        An :class:`MWorkResult`.

    Raises:
        ParameterError: ``fwd_hooks`` are not ``(hook name, function)`` pairs on the
            model's hook points (or a dict of such lists), ``neurons`` of another type, or
            ``n1``/``n2`` out of range (all checked before any forward pass).
        ShapeMismatchError: ``neurons`` cover another number of blocks than the model.

    >>> view = mwork(model, items, ln.deactivate(neurons["fr"]))  # doctest: +SKIP

    """
    conditions = _conditions(fwd_hooks, model)  # everything is checked before a pass
    n_layers = ModelView(model).n_layers
    counts = _layer_counts(neurons, n_layers)
    fixed = None
    if n1 is not None or n2 is not None:
        fixed = stage_split(n_layers=n_layers, n1=n1, n2=n2)
    base = latent_language(model, items, languages=languages, label="baseline", **lens_options)
    # Measure every condition on the same kept items, so the curves are comparable.
    done = {}
    for name, hooks in conditions.items():
        with model.hooks(fwd_hooks=list(hooks)):
            done[name] = latent_language(model, base.items, languages=base.languages,
                                         label=name, **lens_options)
    stages = fixed if fixed is not None else stage_split(base)
    return MWorkResult(baseline=base, intervened=done, layer_counts=counts,
                       stages=stages, fingerprint=base.fingerprint)


def _conditions(fwd_hooks: Any, model: Any) -> dict[str, list]:
    """Condition name -> a checked list of ``(hook name or filter, function)`` pairs."""
    raw = dict(fwd_hooks) if isinstance(fwd_hooks, Mapping) else {"intervened": fwd_hooks}
    if not raw:
        raise ParameterError("fwd_hooks is an empty dict: give at least one condition.")
    return {str(name): _checks.hook_list(hooks, model, f"Condition {name!r}")
            for name, hooks in raw.items()}


def _layer_counts(neurons: Any, n_layers: int) -> Int[torch.Tensor, " block"] | None:
    """Neurons per block, from a NeuronSet, a mask ``[L, ...]`` or counts ``[L]``."""
    if neurons is None:
        return None
    try:
        mask = torch.as_tensor(getattr(neurons, "mask", neurons))
    except (TypeError, ValueError, RuntimeError):
        mask = None
    if mask is None or mask.ndim == 0 or mask.is_floating_point():
        raise ParameterError(
            f"neurons must be a NeuronSet, a mask [layer, unit] or counts per block, got "
            f"{type(neurons).__name__}."
        )
    if mask.shape[0] != n_layers:
        raise ShapeMismatchError(
            f"neurons cover {mask.shape[0]} blocks, the model has {n_layers}; pass the set "
            "detected on this model."
        )
    return reduce(mask.long(), "block ... -> block", "sum")  # a mask, or counts already
