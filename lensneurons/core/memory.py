"""Memory checks before loading or converting a model: fail early with the fix, not mid-copy.

Examples:
    >>> import torch
    >>> check_fits(10, torch.float32, torch.device("cpu"), "ten floats")
"""

from __future__ import annotations

from typing import Any

import torch

from lensneurons.errors import InsufficientMemoryError


def n_parameters(config: Any) -> int:
    """A cheap estimate of a decoder's parameter count from its config."""
    d, layers = int(config.hidden_size), int(config.num_hidden_layers)
    d_mlp = int(getattr(config, "intermediate_size", 4 * d) or 4 * d)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    tied = bool(getattr(config, "tie_word_embeddings", True))
    return vocab * d * (1 if tied else 2) + layers * (4 * d * d + 3 * d * d_mlp)


def check_fits(n_values: int, dtype: torch.dtype, device: torch.device, what: str) -> None:
    """Raise :class:`InsufficientMemoryError` when ``n_values`` of ``dtype`` cannot fit."""
    need = n_values * torch.finfo(dtype).bits // 8
    free = free_bytes(device)
    if free is not None and need > free:
        gib = 2**30
        raise InsufficientMemoryError(
            f"{what} needs about {need / gib:.1f} GiB, but only {free / gib:.1f} GiB is free on "
            f"{device}. Free memory, or load in a smaller dtype (dtype=torch.bfloat16 halves "
            "fp32), or on another device.")


def free_bytes(device: torch.device) -> int | None:
    """Free bytes on ``device`` (``None`` when unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
