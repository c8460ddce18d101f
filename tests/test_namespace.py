"""The public namespace: what a newcomer holds in their head, and the aliases of moved names."""

from __future__ import annotations

import inspect
import warnings

import pytest

import lensneurons as ln
from lensneurons import errors


def test_every_public_name_resolves_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        missing = [name for name in ln.__all__ if getattr(ln, name, None) is None]
    assert not missing


def test_errors_live_in_one_module_under_one_base():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if c.__module__ == "lensneurons.errors"]
    # Ctrl-C carriers stay KeyboardInterrupts only, so `except Exception` cannot swallow them
    exceptions = [c for c in classes if issubclass(c, BaseException)
                  and not issubclass(c, (Warning, KeyboardInterrupt))]
    assert len(exceptions) > 30
    assert all(issubclass(c, ln.LensNeuronsError) for c in exceptions)
    # ...and each also derives from the builtin a Python user would catch
    generic = (Exception, BaseException, object)
    lone = [c.__name__ for c in exceptions if c is not ln.LensNeuronsError and not any(
        b.__module__ == "builtins" and b not in generic for b in c.__mro__)]
    assert not lone, f"{lone} derive from no specific builtin exception"
    with pytest.warns(DeprecationWarning, match="lensneurons.errors.ReadoutError"):
        from lensneurons.errors import ReadoutError
    assert ReadoutError is errors.ReadoutError
    with pytest.warns(DeprecationWarning, match="ln.errors.PositionOutOfRangeError"):
        assert ln.lens.PositionOutOfRangeError is errors.PositionOutOfRangeError
    top_level_errors = [n for n in ln.__all__ if n.endswith("Error")]
    assert top_level_errors == ["LensNeuronsError"]


@pytest.mark.parametrize("name", ["ShapeMismatchError", "UnknownSiteError", "ReadoutError",
                                  "SearchBoundWarning"])
def test_moved_error_names_warn_and_still_work(name):
    with pytest.warns(DeprecationWarning, match=f"ln.errors.{name}"):
        moved = getattr(ln, name)
    assert moved is getattr(errors, name)


def test_random_like_moved_next_to_the_sets():
    from lensneurons.intervene import hooks as interventions

    with pytest.warns(DeprecationWarning, match="lensneurons.neurons"):
        old = interventions.random_like
    assert old is ln.neurons.random_like is ln.neurons.random_like


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError):
        ln.no_such_name  # noqa: B018
