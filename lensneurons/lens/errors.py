"""Deprecated: the lens's error classes live in :mod:`lensneurons.errors` (``ln.errors``).

Importing a name from here still works for one release, with a ``DeprecationWarning``.
"""

import warnings as _warnings
from typing import Any as _Any

from lensneurons import errors as _errors


def __getattr__(name: str) -> _Any:
    if hasattr(_errors, name) and name[0].isupper():
        _warnings.warn(f"lensneurons.lens.errors.{name} moved to lensneurons.errors.{name}; "
                       "the old module goes in the next release.", DeprecationWarning,
                       stacklevel=2)
        return getattr(_errors, name)
    raise AttributeError(f"module 'lensneurons.lens.errors' has no attribute {name!r}")
