"""Matplotlib figures for lens results (imported lazily by the results' ``.plot()``).

Examples:
    >>> from lensneurons.lens.plots import plot_latent
    >>> fig = plot_latent([baseline, masked])  # doctest: +SKIP

"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
_STAGE_COLORS = {"understanding": "#e8f0fb", "task_solving": "#fdf3e1", "generation": "#e9f6ea"}


def _axes(ax: Any, figsize: tuple[float, float] = (6.5, 3.8)) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_lens_result(result: Any, *, ax: Any = None, batch: int | None = None) -> Any:
    """Token-set probabilities (mean over rows) and entropy per layer; or top-1 token labels.

    Args:
        result: a :class:`~lensneurons.lens.result.LensResult`.
        ax: axes to draw in.
        batch: restrict to one row.

    Returns:
        The figure.

    """
    fig, ax = _axes(ax)
    rows = slice(None) if batch is None else slice(batch, batch + 1)
    entropy = result.entropy if not result.multi_position else result.entropy[..., -1]
    entropy = entropy[:, rows].mean(1)
    if result.set_probs is not None:
        probs = result.set_probs if not result.multi_position else result.set_probs[:, :, -1]
        for i, name in enumerate(result.set_names):
            ax.plot(result.layers, probs[:, rows, i].mean(1), marker="o", label=f"P({name})",
                    color=_COLORS[i % len(_COLORS)])
        ax.set_ylabel("probability")
        ax.legend(loc="upper left", fontsize=8)
    else:
        top = result.top_probs if not result.multi_position else result.top_probs[:, :, -1]
        ax.plot(result.layers, top[:, rows, 0].mean(1), marker="o", color="tab:blue",
                label="top-1 probability")
        tokens = result.top_tokens(1)
        b = 0 if batch is None else batch
        for li, layer in enumerate(result.layers):
            entry = tokens[li][b]
            entry = entry[-1] if result.multi_position else entry
            ax.annotate(repr(entry[0][0]), (layer, float(top[li, b, 0])), fontsize=7,
                        rotation=30, xytext=(0, 4), textcoords="offset points")
        ax.set_ylabel("probability")
    twin = ax.twinx()
    twin.plot(result.layers, entropy, color="gray", linestyle=":", label="entropy")
    twin.set_ylabel("entropy (bits)", color="gray")
    ax.set_xlabel("layer (block output)")
    ax.set_title("logit lens")
    fig.tight_layout()
    return fig


def plot_latent(results: Sequence[Any], *, ax: Any = None, entropy: bool = True,
                title: str | None = None, **style: Any) -> Any:
    """Wendler curves: P(lang) per layer with 95% bands; entropy on a second axis.

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
    fig, ax = _axes(ax)
    twin = ax.twinx() if entropy else None
    for k, res in enumerate(results):
        dash = "-" if k == 0 else "--"
        suffix = f" [{res.label}]" if res.label and len(results) > 1 else ""
        for i, lang in enumerate(res.languages):
            color = _COLORS[i % len(_COLORS)]
            lo, hi = res.interval(lang)
            ax.plot(res.layers, res.mean(lang), dash, color=color, marker="o", markersize=3,
                    label=f"P({lang}){suffix}", **style)
            ax.fill_between(res.layers, lo, hi, color=color, alpha=0.15 if k == 0 else 0.08)
        if twin is not None:
            twin.plot(res.layers, res.mean("entropy"), dash, color="gray", alpha=0.7,
                      label=f"entropy{suffix}")
    if twin is not None:
        twin.set_ylabel("entropy (bits)", color="gray")
    first = results[0]
    ax.set_xlabel("layer (block output)")
    ax.set_ylabel("probability")
    ax.set_ylim(bottom=0)
    task = first.items[0].task if first.items else ""
    ax.set_title(title or f"latent language: {task}, n = {first.n_items} items")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_mwork(view: Any, *, quantities: Sequence[str] | None = None) -> Any:
    """Curves of every condition over the stage split, with the neuron-set layer histogram."""
    import matplotlib.pyplot as plt

    has_hist = view.layer_counts is not None
    fig, axes = plt.subplots(2 if has_hist else 1, 1, figsize=(7, 6 if has_hist else 4),
                             sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]} if has_hist else None)
    ax = axes[0, 0]
    for stage, layers in view.stages.items():
        if layers:
            for a in axes[:, 0]:
                a.axvspan(min(layers) - 0.5, max(layers) + 0.5,
                          color=_STAGE_COLORS.get(stage, "#f0f0f0"), zorder=0)
            ax.text((min(layers) + max(layers)) / 2, 1.0, stage.replace("_", " "),
                    transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
    results = [view.baseline, *view.intervened.values()]
    if quantities is not None:
        results = [_only(r, quantities) for r in results]
    plot_latent(results, ax=ax, title="")
    if has_hist:
        hist = axes[1, 0]
        counts = view.layer_counts
        hist.bar([b + 1 for b in range(len(counts))], counts.tolist(), color="tab:gray")
        hist.set_ylabel("neurons")
        hist.set_xlabel("layer (block output)")
    fig.suptitle("MWork view: latent language with and without the mask", fontsize=10)
    fig.tight_layout()
    return fig


def _only(result: Any, quantities: Sequence[str]) -> Any:
    import dataclasses

    keep = [q for q in result.languages if q in quantities]
    idx = [result.languages.index(q) for q in keep]
    return dataclasses.replace(result, languages=tuple(keep), probs=result.probs[..., idx])
