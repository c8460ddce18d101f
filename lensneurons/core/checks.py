"""Range checks of public parameters: each raises :class:`ParameterError` saying what to pass.

One place for the checks that every public function repeats (a batch size, a rate, a factor), so
the messages read alike. ``bool`` is refused wherever a number is expected (``True`` is an ``int``
to Python, never to a user), and so are strings and NaN.

Examples:
    >>> from lensneurons.core.checks import positive_int, rate
    >>> positive_int(8, "batch_size")
    8
    >>> try:
    ...     rate(-0.1, "top_rate")
    ... except ValueError as err:
    ...     print(err)
    top_rate must be a number in (0, 1], got -0.1.
"""

from __future__ import annotations

import math
import numbers
import sys
import unicodedata
from pathlib import Path
from typing import Any

import torch

from lensneurons.errors import NegativeCountError, ParameterError


def integer(value: Any, name: str) -> int:
    """``value`` as an ``int`` (numpy and torch integers too); bools, floats and strings raise.

    Raises:
        ParameterError: ``value`` is not an integer.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        item = getattr(value, "item", None)
        is_int_tensor = (callable(item) and getattr(value, "ndim", None) == 0
                         and not getattr(value, "is_floating_point", lambda: True)()
                         and str(getattr(value, "dtype", "")) != "torch.bool")
        if not is_int_tensor:
            raise ParameterError(f"{name} must be an integer, got {value!r}.")
        value = item()
    return int(value)


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """An integer ``>= minimum``.

    Raises:
        ParameterError: ``value`` is not an integer, or is below ``minimum``.
    """
    number = integer(value, name)
    if number < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return number


def optional_positive_int(value: Any, name: str) -> int | None:
    """``None``, or an integer ``>= 1``."""
    return None if value is None else positive_int(value, name)


def real(value: Any, name: str) -> float:
    """A finite real number (not a bool, a string or NaN).

    Raises:
        ParameterError: ``value`` is not a finite number.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{name} must be a number, got {value!r}.")
    number = float(value)
    if not math.isfinite(number):
        raise ParameterError(f"{name} must be a finite number, got {value!r}.")
    return number


def rate(value: Any, name: str) -> float:
    """A fraction in ``(0, 1]`` (a share of units to select).

    Raises:
        ParameterError: ``value`` is not a number in ``(0, 1]``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ParameterError(f"{name} must be a number in (0, 1], got {value!r}.")
    return float(value)


def percentile(value: Any, name: str) -> float:
    """A percentile in ``[0, 1)``: a threshold some value must exceed (1 would admit none).

    Raises:
        ParameterError: ``value`` is not a number in ``[0, 1)``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ParameterError(
            f"{name} must be a percentile in [0, 1), got {value!r} (at 1 no value can exceed "
            "the threshold, so nothing would be selected)."
        )
    return float(value)


def flag(value: Any, name: str) -> bool:
    """A ``bool`` (so that ``exclusive="no"`` does not read as true).

    Raises:
        ParameterError: ``value`` is not ``True`` or ``False``.
    """
    if not isinstance(value, bool):
        raise ParameterError(f"{name} must be True or False, got {value!r}.")
    return value


def mapping(value: Any, name: str, form: str) -> None:
    """Refuse anything but a dict-like ``{key: value}`` argument.

    Raises:
        ParameterError: ``value`` is not a mapping.
    """
    if not hasattr(value, "keys") or not hasattr(value, "__getitem__"):
        raise ParameterError(f"{name} must be a dict {form}, got {type(value).__name__}.")


def whole_counts(value: Any, name: str) -> torch.Tensor:
    """``value`` (a tensor, an array, a list or a number) as an int64 tensor of counts.

    Raises:
        NegativeCountError: a count is negative.
        ParameterError: a value is not a whole number (e.g. a probability: multiply it by the
            token count), is NaN or infinite, or the tensor is a boolean mask.
    """
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise ParameterError(
            f"{name} must hold numbers (a tensor, an array or a list), got {value!r}."
        ) from None
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ParameterError(
            f"{name} is a {tensor.dtype} tensor; pass counts (how many tokens activated each "
            "unit), not a mask."
        )
    if tensor.is_floating_point():
        values = tensor.double()
        if not torch.isfinite(values).all():
            raise ParameterError(f"{name} holds NaN or infinite values; pass whole counts.")
        if (values < 0).any():
            raise NegativeCountError(f"{name} holds negative counts; counts are >= 0.")
        if (values != values.round()).any():
            raise ParameterError(
                f"{name} holds fractions (e.g. {float(values[values != values.round()][0])!r}):"
                " pass counts, not probabilities. To convert probabilities, multiply them by "
                "the group's n_tokens and round."
            )
    if (tensor < 0).any():
        raise NegativeCountError(f"{name} holds negative counts; counts are >= 0.")
    return tensor.to(torch.int64)


def hook_list(value: Any, model: Any, what: str = "fwd_hooks") -> list[tuple[Any, Any]]:
    """``value`` as a list of ``(hook name or name filter, function)`` pairs on ``model``.

    Raises:
        ParameterError: ``value`` is not such a list (e.g. a NeuronSet, not its hooks), or a
            hook name does not exist on ``model``.
    """
    try:
        pairs = list(value)
    except TypeError:
        pairs = None
    if pairs is None or any(
        not isinstance(pair, (tuple, list)) or len(pair) != 2
        or not (isinstance(pair[0], str) or callable(pair[0])) or not callable(pair[1])
        for pair in pairs
    ):
        raise ParameterError(
            f"{what} must be a list of (hook name, function) pairs, got "
            f"{type(value).__name__}. Build them with an intervention, e.g. "
            "ln.deactivate(neurons['fr'])."
        )
    names = getattr(model, "hook_dict", None)
    if names is not None:
        for name, _ in pairs:  # name filters first: a LayerCheck names the real mismatch
            if callable(name):
                for point in names:
                    name(point)
        unknown = [name for name, _ in pairs if isinstance(name, str) and name not in names]
        if unknown:
            raise ParameterError(
                f"{what} names hook points this model does not have: {unknown}. Hook names "
                f"look like {next(iter(names), 'blocks.0.mlp.hook_post')!r}; see "
                "model.hook_dict."
            )
    return [tuple(pair) for pair in pairs]


def group_label(name: str) -> str:
    r"""A group name as lensneurons keys it: Unicode NFC, without surrounding whitespace.

    Names that print alike name one group: ``"français"`` typed (NFC) or read from a macOS
    file name (NFD, ``c`` + a combining cedilla), ``" fr"`` from a shell line. ``name`` must
    already be a non-blank string.

    Examples:
        >>> group_label(" franc\u0327ais ") == "fran\xe7ais"
        True
    """
    return unicodedata.normalize("NFC", name).strip()


#: Files whose frames a warning skips to reach the user's call: the package and the run-time
#: type-checking wrappers that may sit between it and the user (jaxtyping, beartype).
_WRAPPERS = ("jaxtyping", "beartype", "<@beartype")
_INSIDE = (str(Path(__file__).resolve().parent.parent), *_WRAPPERS)


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised by the caller point at the user's line.

    Counts the frames from the function that calls this one (the one that warns) out to the
    first frame outside lensneurons and outside the type-checking wrappers the tests put around
    it (they may also wrap this function and the caller).
    """
    frame = sys._getframe(1)
    while frame is not None and any(part in frame.f_code.co_filename for part in _WRAPPERS):
        frame = frame.f_back  # the wrappers around this very function
    level = 2  # 1 is the function that warns, 2 its caller
    frame = frame.f_back if frame is not None else None
    while frame is not None and any(part in frame.f_code.co_filename for part in _INSIDE):
        frame, level = frame.f_back, level + 1
    return level
