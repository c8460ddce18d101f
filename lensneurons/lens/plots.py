"""Matplotlib figures for lens results (imported lazily by the results' ``.plot()``).

Examples:
    >>> from lensneurons.lens.plots import plot_latent
    >>> fig = plot_latent([baseline, masked])  # doctest: +SKIP

"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lensneurons.core.figures import axes

_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
_STAGE_COLORS = {"understanding": "#e8f0fb", "task_solving": "#fdf3e1", "generation": "#e9f6ea"}
_SIZE = (6.5, 3.8)
#: The x label of every per-depth figure: a depth is not a block index.
DEPTH_LABEL = "depth (0 = embeddings, d = output of block d - 1)"


def plot_lens_result(result: Any, *, ax: Any = None, batch: int | None = None) -> Any:
    """Token-set probabilities (mean over rows) and entropy per depth; or top-1 token labels.

    Args:
        result: a :class:`~lensneurons.lens.result.LensResult`.
        ax: axes to draw in.
        batch: restrict to one row.

    Returns:
        The figure.

    """
    fig, ax = axes(ax, _SIZE)
    rows = slice(None) if batch is None else slice(batch, batch + 1)
    entropy = result.entropy if not result.multi_position else result.entropy[..., -1]
    entropy = entropy[:, rows].mean(1)
    if result.set_probs is not None:
        probs = result.set_probs if not result.multi_position else result.set_probs[:, :, -1]
        for i, name in enumerate(result.set_names):
            ax.plot(result.depths, probs[:, rows, i].mean(1), marker="o", label=f"P({name})",
                    color=_COLORS[i % len(_COLORS)])
        ax.set_ylabel("probability")
        ax.legend(loc="upper left", fontsize=8)
    else:
        top = result.top_probs if not result.multi_position else result.top_probs[:, :, -1]
        ax.plot(result.depths, top[:, rows, 0].mean(1), marker="o", color="tab:blue",
                label="top-1 probability")
        tokens = result.top_tokens(1)
        b = 0 if batch is None else batch
        for li, depth in enumerate(result.depths):
            entry = tokens[li][b]
            entry = entry[-1] if result.multi_position else entry
            ax.annotate(repr(entry[0][0]), (depth, float(top[li, b, 0])), fontsize=7,
                        rotation=30, xytext=(0, 4), textcoords="offset points")
        ax.set_ylabel("probability")
    twin = ax.twinx()
    twin.plot(result.depths, entropy, color="gray", linestyle=":", label="entropy")
    twin.set_ylabel("entropy (bits)", color="gray")
    ax.set_xlabel(DEPTH_LABEL)
    name = (result.decoder or {}).get("name", "logit_lens")
    ax.set_title(name.replace("_", " "))
    fig.tight_layout()
    return fig


def plot_latent(results: Sequence[Any], *, ax: Any = None, entropy: bool = True,
                title: str | None = None, **style: Any) -> Any:
    """Wendler curves: P(lang) per depth with 95% bands; entropy on a second axis.

    The first result is drawn solid, later ones dashed (e.g. baseline vs a neuron mask).

    Args:
        results: :class:`~lensneurons.lens.latent.LatentLanguageResult` values.
        ax: axes to draw in.
        entropy: also draw the mean entropy (bits).
        title: figure title; default names the task and items.
        **style: passed to ``ax.plot``.

    Returns:
        The figure.

    """
    fig, ax = axes(ax, _SIZE)
    twin = ax.twinx() if entropy else None
    for k, res in enumerate(results):
        dash = "-" if k == 0 else "--"
        suffix = f" [{res.label}]" if res.label and len(results) > 1 else ""
        for i, lang in enumerate(res.languages):
            color = _COLORS[i % len(_COLORS)]
            lo, hi = res.interval(lang)
            ax.plot(res.depths, res.mean(lang), dash, color=color, marker="o", markersize=3,
                    label=f"P({lang}){suffix}", **style)
            ax.fill_between(res.depths, lo, hi, color=color, alpha=0.15 if k == 0 else 0.08)
        if twin is not None:
            twin.plot(res.depths, res.mean("entropy"), dash, color="gray", alpha=0.7,
                      label=f"entropy{suffix}")
    if twin is not None:
        twin.set_ylabel("entropy (bits)", color="gray")
    first = results[0]
    ax.set_xlabel(DEPTH_LABEL)
    ax.set_ylabel("probability")
    ax.set_ylim(bottom=0)
    task = first.items[0].task if first.items else ""
    ax.set_title(title or f"latent language: {task}, n = {first.n_items} items")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_mwork(view: Any, *, ax: Any = None, quantities: Sequence[str] | None = None) -> Any:
    """Curves of every condition over the stage split, with the neuron-set histogram.

    The histogram puts block ``b``'s neurons at depth ``b + 1`` (the block's output), under the
    curves. With ``ax`` the curves and stages are drawn into it, without the histogram.
    """
    import matplotlib.pyplot as plt

    has_hist = view.layer_counts is not None and ax is None
    if ax is None:
        fig, grid = plt.subplots(2 if has_hist else 1, 1, figsize=(7, 6 if has_hist else 4),
                                 sharex=True, squeeze=False,
                                 gridspec_kw={"height_ratios": [3, 1]} if has_hist else None)
        panels = list(grid[:, 0])
    else:
        fig, panels = ax.figure, [ax]
    ax = panels[0]
    for stage, depths in view.stages.items():
        if depths:
            for a in panels:
                a.axvspan(min(depths) - 0.5, max(depths) + 0.5,
                          color=_STAGE_COLORS.get(stage, "#f0f0f0"), zorder=0)
            ax.text((min(depths) + max(depths)) / 2, 1.0, stage.replace("_", " "),
                    transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
    results = [view.baseline, *view.intervened.values()]
    if quantities is not None:
        results = [_only(r, quantities) for r in results]
    plot_latent(results, ax=ax, title="")
    if has_hist:
        hist = panels[1]
        counts = view.layer_counts
        hist.bar([b + 1 for b in range(len(counts))], counts.tolist(), color="tab:gray")
        hist.set_ylabel("neurons of block d - 1")
        hist.set_xlabel(DEPTH_LABEL)
    fig.suptitle("MWork view: latent language with and without the mask", fontsize=10)
    fig.tight_layout()
    return fig


def _only(result: Any, quantities: Sequence[str]) -> Any:
    import dataclasses

    keep = [q for q in result.languages if q in quantities]
    idx = [result.languages.index(q) for q in keep]
    return dataclasses.replace(result, languages=tuple(keep), probs=result.probs[..., idx])
