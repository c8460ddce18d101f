"""The bad-input catalog: every hostile input to the public API and the CLI, and its outcome.

Each ``tests/test_bad_<area>.py`` lists :class:`Case` objects and runs them with
:func:`run_case`. A case either raises a typed :class:`lensneurons.LensNeuronsError` whose
message contains ``match`` (what to do), or works and passes its ``check``. Every case also checks
that no hook is left on the shared model.

``docs/errors.md`` is generated from these runs: ``make errors-doc`` sets
``LENSNEURONS_ERRORS_TABLE`` and the session hook in ``tests/conftest.py`` writes the table of
recorded outcomes. ``tests/test_errors_doc.py`` fails when a case is missing from the document.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

import lensneurons as ln


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        id: stable identifier, unique over the catalog (``area-what``).
        call: the input as a user writes it, e.g. ``deactivate(ns, layers=[99])``.
        run: performs the call, given the shared context.
        raises: the typed error expected, or ``None`` when the input must work.
        match: a regular expression the error message must contain.
        check: for inputs that work: asserts the result is correct.
    """

    id: str
    call: str
    run: Callable[[Any], Any]
    raises: type[BaseException] | None = None
    match: str | None = None
    check: Callable[[Any, Any], None] | None = None


@dataclass
class Outcome:
    """What a case did, as the generated document shows it."""

    area: str
    case: Case
    result: str
    message: str


OUTCOMES: list[Outcome] = []
_AREA = re.compile(r"test_bad_(\w+)")
_RANDOM_SUFFIX = re.compile(r"-[0-9a-f]{8}\b")


@dataclass
class Context:
    """What cases act on; built once per session by the ``bad`` fixture."""

    model: Any
    stats: Any
    sets: Any
    tmp_path: Any
    extra: dict[str, Any] = field(default_factory=dict)


@functools.cache
def same_shape_model() -> Any:
    """The organism with other embedding weights: same architecture and shape, another model."""
    other = ln.organism.load()
    with torch.no_grad():
        other.W_E.add_(0.5)
    return other


def hook_count(model: Any) -> int:
    """Forward hooks currently registered on ``model``'s hook points."""
    return sum(len(point._forward_hooks) for point in model.hook_dict.values())


def run_case(case: Case, ctx: Context, area: str) -> None:
    """Run ``case`` against ``ctx``: assert its outcome, check no hook leaked, record it."""
    before = hook_count(ctx.model)
    if case.raises is None:
        result = case.run(ctx)
        if case.check is not None:
            case.check(result, ctx)
        outcome = Outcome(area, case, "works", "")
    else:
        assert issubclass(case.raises, ln.LensNeuronsError), case.raises
        with pytest.raises(case.raises, match=case.match) as info:
            case.run(ctx)
        outcome = Outcome(area, case, type(info.value).__name__, _stable(info.value, ctx))
    assert hook_count(ctx.model) == before, "a hook leaked"
    OUTCOMES.append(outcome)


def _stable(error: BaseException, ctx: Context) -> str:
    """The message's first line without the session's temporary paths and random suffixes."""
    message = str(error).splitlines()[0] if str(error) else ""
    message = message.replace(f"{ctx.tmp_path}/", "").replace(str(ctx.tmp_path), ".")
    return _RANDOM_SUFFIX.sub("", message)


def area_of(module_name: str) -> str:
    """``tests/test_bad_interventions.py`` -> ``interventions``."""
    found = _AREA.search(module_name)
    return found.group(1) if found else module_name


def params(cases: list[Case]) -> list[Any]:
    """``pytest.param`` per case, with its id (for ``@pytest.mark.parametrize``)."""
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return [pytest.param(c, id=c.id) for c in cases]


def render(outcomes: list[Outcome]) -> str:
    """The markdown of ``docs/errors.md``."""
    lines = [
        "# Bad inputs and what they do",
        "",
        "Every row is a test in `tests/test_bad_*.py`; this page is generated from their run",
        "(`make errors-doc`). An input either works correctly (`works`: the test checks the",
        "result) or raises the typed error named, a subclass of `ln.errors.LensNeuronsError`",
        "whose message says what to do. No input leaves a hook on the model.",
        "",
    ]
    for area in sorted({o.area for o in outcomes}):
        lines += [f"## {area}", "", "| id | input | outcome | message |", "|---|---|---|---|"]
        for o in sorted((o for o in outcomes if o.area == area), key=lambda o: o.case.id):
            message = o.message.replace("|", "\\|")
            if len(message) > 160:
                message = message[:157] + "..."
            call = o.case.call.replace("|", "\\|")
            lines.append(f"| `{o.case.id}` | `{call}` | {o.result} | {message} |")
        lines.append("")
    return "\n".join(lines)
