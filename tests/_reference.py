"""The released 7B reference counts, carried in the repository in a compact, exact form.

``tests/data/reference/`` holds the activation counts that Zhang et al. (2025) released for
MistralMathOctopus-7B on MGSM, and their ternary mask (see the README there). The counts are 20
int32 tensors ``[32, 14336]`` (36.7 MB as a plain safetensors file); they are stored here as an
xz-compressed safetensors file of *prediction residuals*, which :func:`load` turns back into the
original tensors bit for bit:

1. The 20 count tensors are taken in a fixed order (``full.over_zero.<lang>`` for each language,
   then ``prefix.over_zero.<lang>``), flattened to ``X[0..19]`` (int64).
2. Tensor ``i`` is predicted from the tensors before it by an integer linear rule,
   ``pred_i = (sum_j C[i, j] X[j] + C[i, 20] + 2**15) >> 16`` (``C``: int64 fixed-point
   coefficients, fitted once by least squares and stored), so decoding is exact integer
   arithmetic on every machine.
3. The residual ``X[i] - pred_i`` is zigzag-encoded (``0, -1, 1, -2 -> 0, 1, 2, 3``) into uint32 and
   split into its four bytes: ``planes[b, i, layer, unit]`` holds byte ``b`` (0 = least
   significant). Grouping the bytes by significance is what lets xz compress them.

The token totals are stored unchanged, and the metadata holds a sha256 of every original tensor,
which :func:`load` checks, so a wrong reconstruction can never pass silently. ``python
tests/_reference.py SOURCE.safetensors`` rebuilds the packed file from the released one.

Examples:
    >>> import torch
    >>> x = {"full.over_zero.a": torch.tensor([[5, 9]], dtype=torch.int32),
    ...      "prefix.over_zero.a": torch.tensor([[2, 4]], dtype=torch.int32),
    ...      "full.total_tokens.a": torch.tensor(10), "prefix.total_tokens.a": torch.tensor(4)}
    >>> languages, back = unpack(pack(x, ["a"]))
    >>> languages, all(torch.equal(back[k], v) and back[k].dtype == v.dtype for k, v in x.items())
    (['a'], True)
"""

from __future__ import annotations

import hashlib
import json
import lzma
import sys
from functools import cache
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load as load_bytes
from safetensors.numpy import save as save_bytes

DATA = Path(__file__).resolve().parent / "data" / "reference"
COUNTS = DATA / "mgsm_mistral7b_activation_counts.residuals.safetensors.xz"
MASK = DATA / "mgsm_mistral7b_ternary_mask_top0.01_lambda0.109375.json"
#: Fixed-point shift of the prediction coefficients.
SHIFT = 16
FORMAT = "lensneurons-reference-residuals-1"


def _order(languages: list[str]) -> list[str]:
    return [f"{part}.over_zero.{lang}" for part in ("full", "prefix") for lang in languages]


def _digest(array: np.ndarray) -> str:
    header = f"{array.dtype.str}{list(array.shape)}".encode()
    return hashlib.sha256(header + np.ascontiguousarray(array).tobytes()).hexdigest()


def _predict(coefficients: np.ndarray, done: np.ndarray) -> np.ndarray:
    """``(C[:i] . X[:i] + C[-1] + 2**(SHIFT-1)) >> SHIFT`` in exact int64 arithmetic."""
    i = done.shape[0]
    total = coefficients[:i] @ done if i else np.zeros(1, dtype=np.int64)
    return (total + coefficients[-1] + (1 << (SHIFT - 1))) >> SHIFT


def pack(tensors: dict[str, torch.Tensor], languages: list[str]) -> bytes:
    """The packed form (xz of a safetensors file) of the released tensors; checked to round-trip."""
    order = _order(languages)
    shape = tuple(tensors[order[0]].shape)
    flat = np.stack([tensors[name].numpy().astype(np.int64).ravel() for name in order])
    n, width = flat.shape
    coefficients = np.zeros((n, n + 1), dtype=np.int64)
    residuals = np.empty_like(flat)
    for i in range(n):
        design = np.concatenate([flat[:i].T.astype(np.float64), np.ones((width, 1))], axis=1)
        fit = np.linalg.lstsq(design, flat[i].astype(np.float64), rcond=None)[0]
        row = np.round(fit * (1 << SHIFT)).astype(np.int64)
        bound = np.abs(row[:-1]).astype(np.float64) @ np.abs(flat[:i]).max(1, initial=0) if i else 0
        if bound + abs(float(row[-1])) >= 2.0**62:
            raise OverflowError("prediction would overflow int64; lower SHIFT")
        coefficients[i, :i], coefficients[i, -1] = row[:-1], row[-1]
        residuals[i] = flat[i] - _predict(coefficients[i, list(range(i)) + [n]], flat[:i])
    zigzag = ((residuals << 1) ^ (residuals >> 63)).astype(np.uint64)
    if int(zigzag.max()) >= 1 << 32:
        raise OverflowError("a residual does not fit in 32 bits")
    planes = zigzag.astype("<u4").view(np.uint8).reshape(n, width, 4)
    planes = np.ascontiguousarray(planes.transpose(2, 0, 1)).reshape(4, n, *shape)
    arrays = {"planes": planes, "coefficients": coefficients}
    for name, tensor in tensors.items():
        if ".total_tokens." in name:
            arrays[name] = tensor.numpy()
    meta = {
        "format": FORMAT, "languages": ",".join(languages), "order": ",".join(order),
        "shift": str(SHIFT), "dtype": str(tensors[order[0]].numpy().dtype),
        "sha256": json.dumps({k: _digest(v.numpy()) for k, v in sorted(tensors.items())}),
    }
    packed = lzma.compress(save_bytes(arrays, metadata=meta), preset=9 | lzma.PRESET_EXTREME)
    back = unpack(packed)[1]
    if sorted(back) != sorted(tensors) or not all(torch.equal(back[k], tensors[k])
                                                  for k in tensors):
        raise AssertionError("the packed counts do not reproduce the originals")
    return packed


def unpack(packed: bytes) -> tuple[list[str], dict[str, torch.Tensor]]:
    """``(languages, tensors)``: the released tensors, exactly, checked against their sha256."""
    raw = lzma.decompress(packed)
    arrays = load_bytes(raw)
    header_size = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8:8 + header_size])["__metadata__"]
    if meta.get("format") != FORMAT:
        raise ValueError(f"not a packed reference file (format {meta.get('format')!r})")
    order, shift = meta["order"].split(","), int(meta["shift"])
    if shift != SHIFT:
        raise ValueError(f"packed with shift {shift}, this loader decodes {SHIFT}")
    planes, coefficients = arrays["planes"], arrays["coefficients"]
    n = len(order)
    zigzag = np.ascontiguousarray(planes.reshape(4, n, -1).transpose(1, 2, 0)).view("<u4")
    zigzag = zigzag[..., 0].astype(np.int64)
    residuals = (zigzag >> 1) ^ -(zigzag & 1)
    flat = np.empty_like(residuals)
    for i in range(n):
        flat[i] = residuals[i] + _predict(coefficients[i, list(range(i)) + [n]], flat[:i])
    tensors = {name: flat[i].reshape(planes.shape[2:]).astype(meta["dtype"])
               for i, name in enumerate(order)}
    tensors.update({k: v for k, v in arrays.items() if ".total_tokens." in k})
    expected = json.loads(meta["sha256"])
    wrong = sorted(k for k in expected if k not in tensors or _digest(tensors[k]) != expected[k])
    if wrong or sorted(tensors) != sorted(expected):
        raise ValueError(f"reference counts reconstructed wrongly: {wrong or 'names differ'}")
    return meta["languages"].split(","), {k: torch.from_numpy(v) for k, v in tensors.items()}


@cache
def load() -> tuple[list[str], dict[str, torch.Tensor]]:
    """The carried counts: ``(languages, {name: tensor})`` with the released names and dtypes."""
    return unpack(COUNTS.read_bytes())


def mask() -> dict[str, list[list[int]]]:
    """The released ternary mask: ``{lang: [[indices] for each of the 32 layers]}``."""
    return json.loads(MASK.read_text())


if __name__ == "__main__":
    from safetensors import safe_open
    from safetensors.torch import load_file

    source = Path(sys.argv[1])
    with safe_open(str(source), "pt") as handle:
        langs = handle.metadata()["languages"].split(",")
    COUNTS.parent.mkdir(parents=True, exist_ok=True)
    COUNTS.write_bytes(pack(load_file(str(source)), langs))
    print(f"{COUNTS}: {COUNTS.stat().st_size:,} bytes")
