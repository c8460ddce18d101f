"""Language steering shift (LSS): how far an intervention moves answers to the target language.

Each item is a premise in a base language and one answer written in two languages, e.g. the
premise ``"The day after Monday is"`` with the base answer ``"Tuesday"`` and the target answer
``"mardi"``. Per item,

    D(x) = log P(target answer | premise) - log P(base answer | premise),

once without the intervention (``D0``) and once under it (``D1``); an answer's log-probability
is the sum over its tokens, the answer appended to the premise after the base language's
separator (a space, none for Chinese or Japanese). The score is the share of items whose
difference grows, ``mean(D1 - D0 > 0)``: Rahmanisa et al.'s "language steering shift", the
difference of differences of their code. The mean shift ``mean(D1 - D0)`` (in nats) is reported
as well, since the share alone cannot tell a small shift from a large one.

The package ships 34 such facts (days, months, numbers, colours) in nine languages,
:func:`shift_items` builds the items of a base/target pair, dropping facts whose two answers are
the same string (e.g. Italian and Spanish "verde").

Examples:
    >>> import lensneurons as ln
    >>> items = ln.evaluate.shift_items("en", "fr")
    >>> items[0]
    ShiftItem(premise='The day after Monday is', base='Tuesday', target='mardi', separator=' ')
    >>> model = ln.organism.load()
    >>> result = ln.steering_shift(model, items[:4], [])  # no intervention: nothing moves
    >>> result.score, float(abs(result.shifts).max())
    (0.0, 0.0)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import torch
from einops import rearrange

from lensneurons.core.checks import hook_list, positive_int, real
from lensneurons.core.figures import axes
from lensneurons.core.model import ModelView
from lensneurons.core.result import Result
from lensneurons.corpora import langid
from lensneurons.errors import InvalidTextError, ParameterError, UnknownLanguageError
from lensneurons.evaluate.forcing import wilson_interval


@dataclass(frozen=True)
class ShiftItem:
    """One LSS item: a premise and its answer in the base and in the target language."""

    premise: str
    base: str
    target: str
    separator: str = " "


@dataclass(frozen=True)
class ShiftResult(Result):
    """The outcome of :func:`steering_shift`.

    Attributes:
        score: LSS, the share of items with ``D1 - D0 > tolerance``.
        low: lower end of the Wilson 95% interval of ``score``.
        high: upper end.
        mean_shift: mean of ``D1 - D0`` in nats.
        d0: per item, log P(target) - log P(base) without the intervention.
        d1: the same under the intervention.
        items: the items, in order.
        tolerance: the shift (nats) above which an item counts as shifted.
        fingerprint: the model's fingerprint (:meth:`ModelView.fingerprint`): ``load(path,
            model)`` refuses the result of another model.

    ``.table()`` has one row per item; ``.plot()`` the items' shifts, sorted.
    """

    score: float
    low: float
    high: float
    mean_shift: float
    d0: np.ndarray = field(repr=False)
    d1: np.ndarray = field(repr=False)
    items: list[ShiftItem] = field(repr=False)
    tolerance: float = 1e-6
    fingerprint: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def shifts(self) -> np.ndarray:
        """Per item ``D1 - D0``."""
        return self.d1 - self.d0

    def table(self) -> pd.DataFrame:
        """One row per item: premise, answers, ``d0``, ``d1``, ``shift`` and ``shifted``."""
        return pd.DataFrame({
            "premise": [i.premise for i in self.items], "base": [i.base for i in self.items],
            "target": [i.target for i in self.items], "d0": np.asarray(self.d0, dtype=float),
            "d1": np.asarray(self.d1, dtype=float), "shift": np.asarray(self.shifts, dtype=float),
            "shifted": np.asarray(self.shifts > self.tolerance, dtype=bool),
        }, index=pd.RangeIndex(len(self.items), name="item"))

    def summary_line(self) -> str:
        """LSS, its interval and the mean shift, in one line."""
        return (f"ShiftResult: LSS {self.score:.2f} [{self.low:.2f}, {self.high:.2f}] over "
                f"{len(self.items)} items, mean shift {self.mean_shift:+.3f} nats")

    def plot(self, ax: Any = None) -> Any:
        """Each item's shift ``D1 - D0`` (nats), sorted; the shifted items in colour."""
        shifts = np.sort(np.asarray(self.shifts, dtype=float))
        fig, ax = axes(ax, (6, 3.5))
        colors = ["tab:red" if s > self.tolerance else "tab:gray" for s in shifts]
        ax.bar(np.arange(len(shifts)), shifts, color=colors, width=0.9)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlabel("item (sorted by shift)")
        ax.set_ylabel("D1 - D0 (nats)")
        ax.set_title(f"LSS {self.score:.2f} [{self.low:.2f}, {self.high:.2f}], "
                     f"mean shift {self.mean_shift:+.2f} nats")
        fig.tight_layout()
        return fig


@lru_cache(maxsize=1)
def _facts() -> dict[str, Any]:
    text = resources.files("lensneurons").joinpath("data/facts/facts.json").read_text("utf-8")
    return json.loads(text)


def shift_languages() -> list[str]:
    """Languages of the shipped facts.

    Examples:
        >>> shift_languages()
        ['en', 'de', 'fr', 'es', 'it', 'pt', 'ru', 'zh', 'ja']
    """
    return list(_facts()["languages"])


def shift_items(base: str, target: str) -> list[ShiftItem]:
    """The shipped facts as LSS items: premises in ``base``, answers in ``base`` and ``target``.

    Language codes are spelled as :func:`lensneurons.forcing_rate` takes them
    (:func:`lensneurons.corpora.langid.normalize`): ``"FR"``, ``"fr_FR"``, ``"fra"`` are ``"fr"``.

    Raises:
        UnknownLanguageError: a language the facts are not written in.
        ParameterError: ``base == target`` (nothing can shift), or a code is not a string.

    Examples:
        >>> shift_items("EN", "fr-FR") == shift_items("en", "fr")
        True
    """
    known = shift_languages()
    codes = []
    for code in (base, target):
        normalized = langid.normalize(code)
        if normalized not in known:
            raise UnknownLanguageError(
                f"The shipped facts have no language {code!r}; they cover {known}. Write "
                "ShiftItem(premise, base, target) items for other languages."
            )
        codes.append(normalized)
    base, target = codes
    if base == target:
        raise ParameterError(f"base and target are both {base!r}; choose two languages.")
    sep = _facts()["languages"][base]["separator"]
    return [ShiftItem(f["premise"][base], f["object"][base], f["object"][target], sep)
            for f in _facts()["facts"] if f["object"][base] != f["object"][target]]


def check_items(items: Any) -> list[ShiftItem]:
    """``items`` as a non-empty list of :class:`ShiftItem` with non-empty texts."""
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)) or not items:
        raise ParameterError(
            "items must be a non-empty list of ShiftItem; build them with "
            "ln.evaluate.shift_items(base, target)."
        )
    for i, item in enumerate(items):
        if not isinstance(item, ShiftItem):
            raise ParameterError(f"Item {i} is {type(item).__name__}, not a ShiftItem.")
        for name in ("premise", "base", "target"):
            value = getattr(item, name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidTextError(f"Item {i} has an empty or non-string {name}: {value!r}.")
        if item.base == item.target:
            raise ParameterError(
                f"Item {i} has the same base and target answer {item.base!r}; D is 0 with or "
                "without the intervention. Drop it."
            )
    return list(items)


def answer_differences(model: Any, items: Sequence[ShiftItem],
                       fwd_hooks: Sequence[tuple[Any, Callable[..., Any]]] = (), *,
                       batch_size: int = 16) -> np.ndarray:
    """Per item ``log P(target | premise) - log P(base | premise)`` under ``fwd_hooks``."""
    view = ModelView(model)
    hooks = hook_list(fwd_hooks, model)
    sequences, spans = [], []
    for item in items:
        premise = model.to_tokens(item.premise, truncate=False)[0]
        for answer in (item.target, item.base):
            cont = model.to_tokens(item.separator + answer, prepend_bos=False, truncate=False)[0]
            if len(cont) == 0:
                raise InvalidTextError(f"The answer {answer!r} tokenizes to nothing.")
            sequences.append(torch.cat([premise, cont]))
            spans.append((len(premise), len(premise) + len(cont)))
    logprobs = np.zeros(len(sequences))
    with torch.inference_mode(), model.hooks(fwd_hooks=hooks):
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start:start + batch_size]
            width = max(len(s) for s in chunk)
            tokens = torch.zeros(len(chunk), width, dtype=torch.long)
            for row, seq in enumerate(chunk):
                tokens[row, :len(seq)] = seq  # right padding: never read before the answer ends
            logits = model(tokens.to(view.input_device))
            for row, seq in enumerate(chunk):
                begin, end = spans[start + row]  # only the answer's rows in fp32
                lp = torch.log_softmax(logits[row, begin - 1:end - 1].float(), dim=-1)
                logprobs[start + row] = lp.gather(-1, seq[begin:end, None].to(lp.device)).sum()
    pairs = rearrange(logprobs, "(item answer) -> item answer", answer=2)
    return pairs[:, 0] - pairs[:, 1]


def steering_shift(
    model: Any,
    items: Sequence[ShiftItem],
    fwd_hooks: Sequence[tuple[Any, Callable[..., Any]]],
    *,
    batch_size: int = 16,
    baseline: np.ndarray | None = None,
    tolerance: float = 1e-6,
) -> ShiftResult:
    """LSS of an intervention: the share of items whose target-vs-base answer gap grows.

    Args:
        model: a TransformerLens model.
        items: premises and answers (:func:`shift_items`).
        fwd_hooks: the intervention (e.g. ``ln.amplify(sets["fr"], 2.0)``).
        batch_size: sequences per forward pass (two per item and condition).
        baseline: ``D0`` from an earlier call on the same items (a sweep computes it once).
        tolerance: a shift counts when ``D1 - D0 > tolerance`` nats. The original code counts
            ``> 0``; the tolerance keeps floating-point noise of a kernel that is not bitwise
            deterministic (some GPU kernels) from counting as a shift.

    Raises:
        ParameterError: no items, malformed items or hooks, a baseline of another length or
            with a NaN or infinite value, a tolerance that is not a finite number.
    """
    items = check_items(items)
    batch_size = positive_int(batch_size, "batch_size")
    tolerance = real(tolerance, "tolerance")
    d0 = answer_differences(model, items, batch_size=batch_size) if baseline is None else \
        _baseline(baseline, len(items))
    d1 = answer_differences(model, items, fwd_hooks, batch_size=batch_size)
    shifts = d1 - d0
    hits = int((shifts > tolerance).sum())
    low, high = wilson_interval(hits, len(items))
    return ShiftResult(score=hits / len(items), low=low, high=high,
                       mean_shift=float(shifts.mean()), d0=d0, d1=d1, items=items,
                       tolerance=tolerance, fingerprint=ModelView(model).fingerprint())


def _baseline(baseline: Any, n_items: int) -> np.ndarray:
    """A given ``D0`` as float64, one finite value per item."""
    try:
        d0 = np.asarray(baseline, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(
            f"baseline must be numbers, one per item (ShiftResult.d0 of an earlier run), got "
            f"{type(baseline).__name__}."
        ) from None
    if d0.shape != (n_items,):
        raise ParameterError(f"baseline has shape {d0.shape}; it needs one value per item "
                             f"({n_items}).")
    bad = ~np.isfinite(d0)
    if bad.any():
        raise ParameterError(
            f"baseline holds {int(bad.sum())} NaN or infinite values (item "
            f"{int(bad.argmax())}: {d0[bad.argmax()]!r}); a shift from them is meaningless. "
            "Pass the d0 of an earlier steering_shift on the same items, or baseline=None to "
            "compute it."
        )
    return d0
