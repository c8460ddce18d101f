"""Scale-out of :func:`lensneurons.collect` over ``torch.distributed`` (``torchrun``).

Statistics are sums (and maxima), so ranks never talk while they collect: rank ``r`` of ``W``
runs the batches ``r, r + W, r + 2W, ...`` of the deterministic batch list, and the totals are
all-reduced once at the end (and at each checkpoint): ``groups x layers x units`` numbers per
statistic, however large the corpus. Per-sequence means (for medians) do not reduce by sums;
they are all-gathered. Every rank returns the merged statistics; rank 0 alone writes files.

When the environment says ``WORLD_SIZE > 1`` (as ``torchrun`` sets it) and no process group is
initialised, one is initialised from that environment: NCCL when the model is on a CUDA device,
gloo otherwise. A script that calls ``collect`` therefore runs unchanged under ``torchrun``.

Examples:
    >>> import lensneurons as ln
    >>> join(ln.ModelView(ln.organism.load()), None) is None  # not under torchrun
    True
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import torch

from lensneurons import errors
from lensneurons.core.model import ModelView
from lensneurons.errors import ParameterError

_MAX_KEYS = ("max", "seq_mean_max")


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def _env_world() -> int:
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise ParameterError(
            f"WORLD_SIZE={raw!r} in the environment is not a number; run under torchrun, or "
            "unset it.") from None


@dataclass(frozen=True)
class Group:
    """The process group a collection is spread over.

    Attributes:
        rank: this process's rank.
        world: the number of processes.
        device: where collectives run (the model's CUDA device under NCCL, else the CPU).
    """

    rank: int
    world: int
    device: torch.device

    @property
    def leader(self) -> bool:
        """Whether this rank writes files (rank 0)."""
        return self.rank == 0

    def all_reduce(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Totals of every rank merged (sum; maximum for maxima), on the CPU. Inputs unchanged."""
        dist = _dist()
        out = {}
        for key, value in state.items():
            merged = value.to(self.device, copy=True)
            op = dist.ReduceOp.MAX if key in _MAX_KEYS else dist.ReduceOp.SUM
            dist.all_reduce(merged, op=op)
            out[key] = merged.cpu()
        return out

    def all_gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The ``rows`` of every rank concatenated in rank order (``[n_r, ...]`` each)."""
        dist = _dist()
        sizes = self.all_gather_ints([rows.shape[0]])
        longest = max(size[0] for size in sizes)
        padded = torch.zeros((longest, *rows.shape[1:]), dtype=rows.dtype, device=self.device)
        padded[: rows.shape[0]] = rows.to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([part[: size[0]].cpu() for part, size in zip(parts, sizes)])

    def all_gather_ints(self, values: list[int]) -> list[list[int]]:
        """``values`` (the same length on every rank) of every rank, in rank order."""
        dist = _dist()
        mine = torch.tensor(values, dtype=torch.int64, device=self.device)
        parts = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(parts, mine)
        return [part.cpu().tolist() for part in parts]

    def broadcast_int(self, value: int) -> int:
        """Rank 0's ``value`` on every rank."""
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        _dist().broadcast(tensor, src=0)
        return int(tensor.item())

    def agree(self, error: BaseException | None) -> None:
        """Raise on every rank if any rank failed a check (so that no rank waits forever).

        The failing rank re-raises its own error; the others raise the same class (when it is a
        lensneurons error) saying which rank failed and why.
        """
        texts: list[Any] = [None] * self.world
        mine = None if error is None else (type(error).__name__, str(error))
        _dist().all_gather_object(texts, mine)
        if error is not None:
            raise error
        for rank, text in enumerate(texts):
            if text is not None:
                name, message = text
                cls = getattr(errors, name, None)
                if not (isinstance(cls, type) and issubclass(cls, errors.LensNeuronsError)):
                    cls = errors.LensNeuronsError
                raise cls(f"Rank {rank} stopped the collection: {message}")

    def check_same(self, identity: dict[str, Any]) -> None:
        """Raise unless every rank has the same model, corpus and settings.

        Raises:
            ParameterError: ranks disagree (a rank built another corpus, or got other arguments).
        """
        text = json.dumps(identity, sort_keys=True).encode()
        mine = list(hashlib.sha256(text).digest()[:8])
        found = self.all_gather_ints(mine)
        odd = [rank for rank, value in enumerate(found) if value != found[0]]
        if odd:
            raise ParameterError(
                f"Ranks {odd} have another model, corpus or collect() arguments than rank 0; "
                "every rank must build the same corpus (same texts, same order) and call "
                "collect() with the same arguments: each then runs its own share of the batches.")


def join(view: ModelView, distributed: Any) -> Group | None:
    """The process group to collect over, initialised from ``torchrun``'s environment if needed.

    Args:
        view: the model (its device picks the backend).
        distributed: ``None`` (automatic: under ``torchrun``, or in an initialised group of
            more than one process), ``True`` (required) or ``False`` (never).

    Raises:
        ParameterError: ``distributed`` is not a bool or ``None``, or ``True`` while this
            process is not part of a group of several processes.
    """
    if distributed is not None and not isinstance(distributed, bool):
        raise ParameterError(f"distributed must be None, True or False, got {distributed!r}.")
    if distributed is False:
        return None
    dist = _dist() if torch.distributed.is_available() else None
    if dist is not None and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    elif dist is not None and _env_world() > 1:
        backend = "nccl" if view.input_device.type == "cuda" else "gloo"
        if backend == "nccl":
            _check_gpu(view.input_device)
            torch.cuda.set_device(view.input_device)
        try:
            dist.init_process_group(backend=backend)
        except (ValueError, KeyError) as err:  # e.g. WORLD_SIZE set by hand, no MASTER_ADDR
            raise ParameterError(
                f"WORLD_SIZE={_env_world()} says this is one of several processes, but the "
                f"environment torchrun sets is incomplete ({err}). Launch the script with "
                "torchrun, or pass distributed=False to collect in this process alone."
            ) from None
        atexit.register(_leave)
        world, rank = dist.get_world_size(), dist.get_rank()
    else:
        world, rank = 1, 0
    if world <= 1:
        if distributed:
            raise ParameterError(
                "distributed=True, but this process is not one of several: launch the script "
                "with torchrun --nproc-per-node N (or initialise a process group first).")
        return None
    nccl = dist.get_backend() == "nccl"
    device = view.input_device if nccl else torch.device("cpu")
    return Group(rank, world, device)


def _check_gpu(device: torch.device) -> None:
    """Refuse a model on another GPU than this rank's (every rank would share GPU 0)."""
    local = os.environ.get("LOCAL_RANK")
    if local is None or not local.isdigit() or torch.cuda.device_count() <= 1:
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index != int(local):
        raise ParameterError(
            f"Under torchrun, the rank with LOCAL_RANK={local} holds its model on cuda:{index}; "
            f"each rank needs its own GPU. Load the model with device=f\"cuda:{{LOCAL_RANK}}\", "
            "or call torch.cuda.set_device(int(os.environ['LOCAL_RANK'])) before loading it.")


def _leave() -> None:
    dist = _dist()
    if dist.is_initialized():
        dist.destroy_process_group()
