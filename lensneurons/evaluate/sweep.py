"""Sweeps over intervention strength: forcing rate, LSS and held-out NLL per value.

A sweep calls ``make_hooks(value)`` (a factory: the value in, ready ``fwd_hooks`` out) for each
value (an amplification factor, an arithmetic
``alpha`` or ``beta``, ...) and measures what is asked for: the forcing rate into ``target``
(``prompts``), the language steering shift (``lss_items``) and the mean NLL of each group of a
held-out corpus (``nll_corpus``), the last showing what the steering costs. The unintervened
model is measured once, as the baseline. The value is chosen as Rahmanisa et al. choose it, by
the highest LSS; :meth:`SweepResult.smallest_reaching` also gives the smallest value whose
forcing rate reaches a threshold, which is usually the cheaper one in NLL.

Ctrl-C keeps the finished values: :class:`~lensneurons.errors.SweepInterrupted` carries them,
and with ``out=`` they are on disk after every value (an atomic save, so the file is never
half-written).

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> stats = ln.ActivationStats.load(ln.organism.stats_path(), model=model)  # doctest: +SKIP
    >>> sets = ln.lape(stats)  # doctest: +SKIP
    >>> result = ln.sweep(model, lambda a: ln.steer(sets, stats, None, "fr", alpha=a),
    ...                   [0.5, 1, 2], lss_items=ln.evaluate.shift_items("en", "fr"))
    ...                   # doctest: +SKIP
    >>> result.best()  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from lensneurons.core.checks import hook_list, rate
from lensneurons.core.figures import axes
from lensneurons.core.model import ModelView
from lensneurons.core.persistence import check_writable, environment
from lensneurons.core.result import Result
from lensneurons.corpora import langid
from lensneurons.corpora.corpus import Corpus
from lensneurons.errors import CorruptResultError, ParameterError, SweepInterrupted
from lensneurons.evaluate import perplexity
from lensneurons.evaluate.forcing import forcing_rate
from lensneurons.evaluate.generation import decoding_mode
from lensneurons.evaluate.shift import answer_differences, check_items, steering_shift

MakeHooks = Callable[[float], Sequence[tuple[Any, Callable[..., Any]]]]


@dataclass
class SweepResult(Result):
    """Measurements per intervention value.

    Attributes:
        measurements: one row per finished value (index ``value``): ``forcing_rate``,
            ``forcing_low``, ``forcing_high`` (Wilson 95%), ``lss``, ``lss_low``, ``lss_high``,
            ``mean_shift`` and ``nll:<group>``, each present when its input was given
            (``.table()``).
        baseline: the same measurements without the intervention.
        target: the forcing target, if any.
        generations: per value, the continuations of the prompts.
        environment: where the sweep ran (package versions, threads, CPU instruction set or GPU,
            the model's dtype and device); a loaded result holds the one its file records.
        fingerprint: the model's fingerprint (:meth:`ModelView.fingerprint`): ``load(path,
            model)`` refuses the result of another model.

    Saved as ``sweep.safetensors`` + ``sweep.json`` (:meth:`save`, :meth:`load`; atomic, see
    :mod:`lensneurons.core.persistence`).
    """

    kind = "sweep"

    measurements: pd.DataFrame
    baseline: dict[str, float]
    target: str | None = None
    generations: dict[float, list[str]] = field(default_factory=dict, repr=False)
    environment: dict[str, Any] = field(default_factory=dict, repr=False)
    fingerprint: dict[str, Any] = field(default_factory=dict, repr=False)

    def table(self) -> pd.DataFrame:
        """One row per finished value: forcing rate and interval, LSS, NLL per group."""
        return self.measurements

    def best(self) -> float:
        """The value with the highest LSS (ties: larger mean shift, then smaller value)."""
        if "lss" not in self.measurements or self.measurements.empty:
            raise ParameterError("best() chooses by LSS: run the sweep with lss_items=.")
        order = self.measurements.reset_index().sort_values(
            ["lss", "mean_shift", "value"], ascending=[False, False, True])
        return float(order["value"].iloc[0])

    def smallest_reaching(self, threshold: float = 0.5) -> float | None:
        """The smallest value whose forcing rate is at least ``threshold`` (``None``: none)."""
        threshold = rate(threshold, "threshold")
        if "forcing_rate" not in self.measurements:
            raise ParameterError("smallest_reaching() needs forcing rates: pass prompts=.")
        hit = self.measurements.index[self.measurements["forcing_rate"] >= threshold]
        return float(min(hit)) if len(hit) else None

    def plot(self, ax: Any = None, *, title: str | None = None) -> Any:
        """Rates (forcing with its interval, LSS) and, on a second axis, the NLL per group."""
        fig, ax = axes(ax, (6, 3.5))
        table = self.measurements
        x = table.index.to_numpy(dtype=float)
        if "forcing_rate" in table:
            ax.plot(x, table["forcing_rate"], "o-", label=f"forcing rate ({self.target})")
            ax.fill_between(x, table["forcing_low"], table["forcing_high"], alpha=0.2)
        if "lss" in table:
            ax.plot(x, table["lss"], "s--", label="LSS")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("intervention value")
        ax.set_ylabel("share")
        nll = [c for c in table if c.startswith("nll:")]
        if nll:
            twin = ax.twinx()
            for column in nll:
                twin.plot(x, table[column], ":", alpha=0.7, label=column)
            twin.set_ylabel("held-out NLL (nats)")
            twin.legend(loc="lower right", fontsize="small")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize="small")
        ax.set_title(title or "sweep")
        fig.tight_layout()
        return fig

    def _model(self) -> Any:
        return self.environment or None

    def _record(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        table = self.measurements
        tensor = torch.tensor(table.to_numpy(dtype=np.float64), dtype=torch.float64)
        return {"table": tensor}, {
            "values": [float(v) for v in table.index], "columns": list(table.columns),
            "baseline": self.baseline, "target": self.target,
            "generations": [[float(v), texts] for v, texts in self.generations.items()],
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def _from_record(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> SweepResult:
        """The sweep back from its files.

        Raises:
            CorruptResultError: the files are damaged or were edited (e.g. a values list that no
                longer matches the table).
        """
        table, values, columns = tensors.get("table"), meta.get("values"), meta.get("columns")
        generations, baseline = meta.get("generations", []), meta.get("baseline")
        rows = (len(values), len(columns)) if isinstance(values, list) and isinstance(
            columns, list) else None
        if (table is None or rows is None or tuple(table.shape) != rows
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           for v in values)
                or not isinstance(baseline, dict) or not isinstance(generations, list)
                or not all(isinstance(g, list) and len(g) == 2 for g in generations)):
            shape = None if table is None else tuple(table.shape)
            raise CorruptResultError(
                f"The sweep is damaged: its table has shape {shape} but its JSON lists "
                f"{rows[0] if rows else '?'} values and {rows[1] if rows else '?'} columns (or "
                "its baseline or generations are malformed). Run the sweep again (out= saves "
                "it after every value)."
            )
        frame = pd.DataFrame(table.numpy(), columns=columns,
                             index=pd.Index(values, name="value", dtype=float))
        return cls(frame, baseline, meta.get("target"),
                   {float(v): texts for v, texts in generations},
                   dict(meta.get("environment") or {}), dict(meta.get("fingerprint") or {}))


def _check_values(values: Any) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
        raise ParameterError(f"values must be a list of numbers, got {type(values).__name__}.")
    if len(values) == 0:
        raise ParameterError("The sweep has no values; pass e.g. values=[0.5, 1, 2, 4].")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or \
                not math.isfinite(value):
            raise ParameterError(f"Sweep values must be finite numbers, got {value!r}.")
        out.append(float(value))
    if len(set(out)) != len(out):
        raise ParameterError(f"Sweep values repeat: {values}; pass each value once.")
    return out


def _measure(model: Any, hooks: Sequence[Any], prompts: Sequence[str] | None,
             target: str | None, items: list[Any] | None, d0: np.ndarray | None,
             corpus: Corpus | None, options: dict[str, Any]) -> tuple[dict[str, float],
                                                                        list[str]]:
    row: dict[str, float] = {}
    texts: list[str] = []
    if prompts is not None and target is not None:
        forced = forcing_rate(model, prompts, hooks, target, **options)
        row |= {"forcing_rate": forced.rate, "forcing_low": forced.low,
                "forcing_high": forced.high}
        texts = forced.generations
    if items is not None:
        shift = steering_shift(model, items, hooks, baseline=d0)
        row |= {"lss": shift.score, "lss_low": shift.low, "lss_high": shift.high,
                "mean_shift": shift.mean_shift}
    if corpus is not None:
        nll = perplexity(model, corpus, fwd_hooks=list(hooks), progress=False).table()
        row |= {f"nll:{group}": float(nll.loc[group, "mean_nll"]) for group in nll.index}
    return row, texts


def sweep(
    model: Any,
    make_hooks: MakeHooks,
    values: Sequence[float],
    *,
    prompts: Sequence[str] | None = None,
    target: str | None = None,
    lss_items: Sequence[Any] | None = None,
    nll_corpus: Corpus | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    languages: Sequence[str] | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **generate_kwargs: Any,
) -> SweepResult:
    """Measure an intervention at each strength in ``values``.

    Args:
        model: a TransformerLens model.
        make_hooks: ``value -> fwd_hooks``, e.g. ``lambda a: ln.amplify(sets["fr"], a)``.
        values: the strengths, measured in this order.
        prompts: prompts for the forcing rate (needs ``target``).
        target: the language the intervention should force.
        lss_items: items for the steering shift (:func:`~lensneurons.evaluate.shift_items`).
        nll_corpus: held-out texts whose mean NLL per group is measured.
        max_new_tokens: tokens per continuation for the forcing rate.
        batch_size: sequences per generation call.
        languages: restrict the language identifier to these languages.
        out: save the result here after every value (a result folder).
        overwrite: replace a result already at ``out``.
        progress: show a progress bar over the values.
        **generate_kwargs: passed to ``model.generate``.

    Returns:
        A :class:`SweepResult`: ``.table()``, ``.baseline``, ``.best()``,
        ``.smallest_reaching(threshold)``, ``.plot()``, ``.save(path)``.

    Raises:
        ParameterError: no values, a non-finite value, nothing to measure, prompts without a
            target, ``make_hooks`` not callable or returning something that is not hooks.
        SweepInterrupted: on Ctrl-C, with the finished values (also saved to ``out``).
    """
    values = _check_values(values)
    if not callable(make_hooks):
        raise ParameterError("make_hooks must be a function value -> fwd_hooks, e.g. "
                             "lambda a: ln.amplify(sets['fr'], a).")
    if prompts is None and lss_items is None and nll_corpus is None:
        raise ParameterError("Nothing to measure: pass prompts= (with target=), lss_items= or "
                             "nll_corpus=.")
    if (prompts is None) != (target is None):
        raise ParameterError("prompts= and target= go together: the forcing rate needs both.")
    if nll_corpus is not None and not isinstance(nll_corpus, Corpus):
        raise ParameterError("nll_corpus must be an ln.Corpus of held-out texts per group.")
    if target is not None:
        target = langid.check_language(target)
    if languages is not None and prompts is not None:  # refuse before any forward pass
        languages = [langid.check_language(code) for code in languages]
        langid.check_candidates([*languages, target])
    if out is not None:
        check_writable(out, overwrite=overwrite)
    items = check_items(lss_items) if lss_items is not None else None
    options = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, languages=languages,
                   **generate_kwargs)
    d0 = answer_differences(model, items) if items is not None else None
    baseline, _ = _measure(model, [], prompts, target, items, d0, nll_corpus, options)
    result = SweepResult(pd.DataFrame(index=pd.Index([], name="value", dtype=float)), baseline,
                         target, environment=environment(model),
                         fingerprint=ModelView(model).fingerprint())
    if prompts is not None:  # how the forcing rate's generations decode (per model, see generate)
        result.environment["decoding"] = decoding_mode(
            model, generate_kwargs.get("use_past_kv_cache"))
    rows: dict[float, dict[str, float]] = {}
    bar = tqdm(values, desc="sweep", disable=not progress)
    current = values[0]
    try:
        for current in bar:
            hooks = hook_list(make_hooks(current), model, "make_hooks(value)")
            rows[current], result.generations[current] = _measure(
                model, hooks, prompts, target, items, d0, nll_corpus, options)
            result.measurements = pd.DataFrame.from_dict(rows, orient="index").rename_axis(
                "value")
            if out is not None:
                result.save(out, overwrite=True)
    except KeyboardInterrupt:
        done = f"{len(rows)} of {len(values)} values finished"
        where = f"; saved to {out}" if out is not None and rows else ""
        raise SweepInterrupted(f"Sweep interrupted at value {current} ({done}{where}).",
                               result, current, out if rows else None) from None
    finally:
        bar.close()
    return result
