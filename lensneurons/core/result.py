"""The result convention: every public result is a table, a figure, a folder and a notebook view.

A result class derives from :class:`Result` and writes two things of its own:

* ``table()``: the numbers as a pandas ``DataFrame``;
* ``plot(ax=None)``: the figure a paper would show for it, as a matplotlib ``Figure``.

:class:`Result` adds the rest:

* ``save(path, *, overwrite=False)`` writes the result through the one persistence layer
  (:mod:`lensneurons.core.persistence`: atomic, verified) and returns the folder written;
* ``Type.load(path, model=None)`` gives the result back (``table()`` equal to the original's),
  refusing results of another model when ``model`` is given;
* ``_repr_html_()`` shows it in Jupyter: a one-line summary, the head of the table and the
  figure, so evaluating a result in a notebook *shows* it.

Dataclass results are saved field by field by a small codec: tensors go to the safetensors file;
DataFrames, numbers, strings, lists, dicts and nested dataclasses (results or items) to the JSON.
A result whose storage is its own (statistics, neuron sets, PLND scores) overrides
``_record`` / ``_from_record`` and keeps its file layout.

Examples:
    >>> import pandas as pd
    >>> from lensneurons.core.result import decode, encode
    >>> from lensneurons.corpora.items import AttributionItem
    >>> tensors = {}
    >>> record = encode({"items": [AttributionItem("Paris is in", " France")],
    ...                  "table": pd.DataFrame({"n": [3, 1]}, index=["fr", "de"])}, tensors, "")
    >>> back = decode(record, tensors)
    >>> back["items"][0].answer, int(back["table"].loc["de", "n"])
    (' France', 1)
"""

from __future__ import annotations

import base64
import dataclasses
import html
import importlib
import math
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from lensneurons.core.figures import figure_png
from lensneurons.core.model import ModelView
from lensneurons.core.persistence import load_result, save_result
from lensneurons.errors import CorruptResultError

#: Rows of the table a notebook shows.
HEAD_ROWS = 8


class Result:
    """Base of every public result: ``table``, ``plot``, ``save``, ``load``, ``_repr_html_``."""

    #: The persistence kind (the stem of the two files); one of ``persistence.KINDS``.
    kind: ClassVar[str] = "result"

    # -- what a result writes itself -------------------------------------------------------
    def table(self) -> pd.DataFrame:
        """The numbers of the result."""
        raise NotImplementedError

    def plot(self, ax: Any = None) -> Any:
        """The figure a paper would show for the result."""
        raise NotImplementedError

    def summary_line(self) -> str:
        """One line for the notebook view (default: the class name and the table's shape)."""
        rows, cols = self.table().shape
        return f"{type(self).__name__}: {rows} rows x {cols} columns"

    # -- storage ---------------------------------------------------------------------------
    def _record(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The tensors and the JSON metadata that hold the result (default: the dataclass codec)."""
        tensors: dict[str, torch.Tensor] = {}
        meta = encode(self, tensors, "")
        return tensors, {"result": meta}

    @classmethod
    def _from_record(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Any:
        """The result back from :meth:`_record`'s output."""
        value = decode(meta["result"], tensors)
        if not isinstance(value, cls):
            raise CorruptResultError(f"The folder holds a {type(value).__name__}, not a "
                                     f"{cls.__name__}; load it with {type(value).__name__}.load.")
        return value

    def _model(self) -> Any:
        """The model (or a fingerprint holder) whose environment a save records, if known."""
        return None

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the result as the folder ``path``, atomically, and return the folder.

        Raises:
            ResultExistsError: ``path`` holds a result and ``overwrite`` is false.
        """
        tensors, meta = self._record()
        return save_result(path, self.kind, tensors, meta, overwrite=overwrite,
                           model=self._model())

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Any = None) -> Any:
        """Read a result saved with :meth:`save`; with ``model``, refuse another model's result."""
        tensors, meta = load_result(path, cls.kind)
        result = cls._from_record(tensors, meta)
        if model is not None:
            result._check_model(model)
        return result

    def _check_model(self, model: Any) -> None:
        """Raise ``ModelMismatchError`` when the result records another model.

        The default reads a ``fingerprint`` field, if the result has one.
        """
        fingerprint = getattr(self, "fingerprint", None)
        if isinstance(fingerprint, dict) and fingerprint:
            view = model if isinstance(model, ModelView) else ModelView(model)
            view.check_fingerprint(fingerprint, f"This {type(self).__name__}")

    # -- the notebook view -----------------------------------------------------------------
    def _repr_html_(self) -> str:
        parts = [f"<p><b>{html.escape(self.summary_line())}</b></p>"]
        table = self.table()
        parts.append(table.head(HEAD_ROWS).to_html(float_format=lambda v: f"{v:.4g}"))
        if len(table) > HEAD_ROWS:
            parts.append(f"<p>… {len(table) - HEAD_ROWS} more rows: <code>.table()</code></p>")
        parts.append(figure_html(self.plot()))
        return "\n".join(parts)


def figure_html(fig: Any) -> str:
    """A figure as an inline PNG ``<img>``, closed afterwards (notebooks do not draw it twice)."""
    data = base64.b64encode(figure_png(fig).tobytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}"/>'


# -- the codec: dataclass results <-> (tensors, JSON) -------------------------------------------
_TENSOR, _FRAME, _SERIES, _OBJECT, _PAIRS, _TUPLE, _FLOAT, _ARRAY = (
    "__tensor__", "__frame__", "__series__", "__object__", "__pairs__", "__tuple__", "__float__",
    "__array__")


def encode(value: Any, tensors: dict[str, torch.Tensor], key: str) -> Any:
    """``value`` as JSON, its tensors added to ``tensors`` under names derived from ``key``."""
    if isinstance(value, torch.Tensor):
        tensors[key or "value"] = value.detach().cpu().contiguous()
        return {_TENSOR: key or "value"}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":  # numbers: a tensor, given back as a numpy array
            copy = np.array(value, order="C", copy=True)  # writable: torch refuses read-only
            return {**encode(torch.from_numpy(copy), tensors, key),
                    _ARRAY: str(value.dtype)}
        return {_ARRAY: str(value.dtype), "values": value.tolist()}  # strings: in the JSON
    if isinstance(value, pd.DataFrame):
        return {_FRAME: _frame(value)}
    if isinstance(value, pd.Series):
        return {_SERIES: _frame(value.to_frame(name=value.name if value.name is not None
                                                else "__unnamed__"))}
    if isinstance(value, Result) and type(value)._record is not Result._record:
        own_tensors, meta = value._record()
        for name, tensor in own_tensors.items():
            tensors[f"{key}/{name}"] = tensor
        return {_OBJECT: _qualname(value), "record": meta, "prefix": key}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name), tensors, f"{key}.{f.name}")
                  for f in dataclasses.fields(value) if f.init}
        return {_OBJECT: _qualname(value), "fields": fields}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: encode(v, tensors, f"{key}[{k}]") for k, v in value.items()}
        return {_PAIRS: [[encode(k, tensors, f"{key}<{i}"), encode(v, tensors, f"{key}>{i}")]
                         for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, tuple):
        return {_TUPLE: [encode(v, tensors, f"{key}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, tensors, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        return {_FLOAT: repr(float(value))}
    if isinstance(value, (np.integer, np.bool_, np.floating)):
        return value.item()
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if _TENSOR in value:
        tensor = tensors[value[_TENSOR]]
        return tensor.numpy().astype(value[_ARRAY], copy=False) if _ARRAY in value else tensor
    if _ARRAY in value:
        return np.array(value["values"], dtype=value[_ARRAY])
    if _FRAME in value:
        return _unframe(value[_FRAME])
    if _SERIES in value:
        series = _unframe(value[_SERIES]).iloc[:, 0]
        return series.rename(None) if series.name == "__unnamed__" else series
    if _FLOAT in value:
        return float(value[_FLOAT])
    if _TUPLE in value:
        return tuple(decode(v, tensors) for v in value[_TUPLE])
    if _PAIRS in value:
        return {_hashable(decode(k, tensors)): decode(v, tensors) for k, v in value[_PAIRS]}
    if _OBJECT in value:
        cls = _class(value[_OBJECT])
        if "record" in value:
            prefix = value["prefix"] + "/"
            own = {k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)}
            return cls._from_record(own, value["record"])
        return cls(**{k: decode(v, tensors) for k, v in value["fields"].items()})
    return {k: decode(v, tensors) for k, v in value.items()}


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value


def _qualname(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}:{cls.__qualname__}"


def _class(name: str) -> Any:
    module, _, qualname = name.partition(":")
    if not module.startswith("lensneurons."):
        raise CorruptResultError(f"A saved result names the class {name!r}, which is not "
                                 "lensneurons's; the file was edited.")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _labels(index: pd.Index) -> dict[str, Any]:
    return {"values": [list(v) if isinstance(v, tuple) else v for v in index.tolist()],
            "names": list(index.names), "dtype": None if isinstance(index, pd.MultiIndex)
            else str(index.dtype)}


def _unlabels(record: dict[str, Any]) -> pd.Index:
    values = record["values"]
    if len(record["names"]) > 1:
        return pd.MultiIndex.from_tuples([tuple(v) for v in values], names=record["names"])
    index = pd.Index(values, name=record["names"][0])
    dtype = record["dtype"]
    if dtype and dtype != str(index.dtype) and values:
        index = index.astype(dtype)
    elif dtype and not values:
        index = pd.Index([], dtype=dtype, name=record["names"][0])
    return index


def _cell(value: Any) -> Any:
    """One table cell as JSON: numpy scalars as Python ones, NaN and infinities tagged."""
    value = value.item() if hasattr(value, "item") else value
    return {_FLOAT: repr(value)} if isinstance(value, float) and not math.isfinite(value) else value


def _frame(frame: pd.DataFrame) -> dict[str, Any]:
    columns = [{"data": [_cell(v) for v in frame[name].tolist()], "dtype": str(frame[name].dtype)}
               for name in frame.columns]
    return {"index": _labels(frame.index), "columns": _labels(frame.columns), "data": columns,
            "attrs": {k: v for k, v in frame.attrs.items() if isinstance(v, (str, int, float))}}


def _unframe(record: dict[str, Any]) -> pd.DataFrame:
    index, columns = _unlabels(record["index"]), _unlabels(record["columns"])
    data = {}
    for i, column in enumerate(record["data"]):
        values = [float(v[_FLOAT]) if isinstance(v, dict) else v for v in column["data"]]
        series = pd.Series(values, index=index, dtype=object)
        data[i] = series if column["dtype"] == "object" else series.astype(column["dtype"])
    frame = pd.DataFrame(data, index=index)
    frame.columns = columns
    frame.attrs.update(record.get("attrs", {}))
    return frame
