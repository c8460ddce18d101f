"""The hook side of :func:`lensneurons.collect`: per-layer accumulators fed by one hook per layer.

Private to the collection engine (:mod:`lensneurons.stats.engine`). Each hook selects the counted
tokens of the batch and computes per-group counts, sums, sums of squares and maxima on the layer's
device; the batch's index tensors are built once per device, not once per layer. Opt-out: the
activation values' sums, sums of squares and maxima (``value_stats=False`` keeps the counts
only, all that LAPE-style detectors read, and skips the activation function and the float64
sums, most of the hook's work). Opt-in: per-sequence means (``sequence_stats``) and per-document
counts (``document_stats``: in how many rows, one document each, a unit is active on at least
one counted token).

**Transactional per batch.** Hooks fire layer by layer, so a pass that fails half-way (out of
memory, Ctrl-C) would leave the first layers counted and the others not. A hook therefore never
touches the totals: it records the batch's per-group *deltas* (small ``[width]`` tensors), and
:meth:`Accumulators.commit` adds them once the whole batch has passed. :meth:`Accumulators.mark`
and :meth:`Accumulators.rollback` drop the deltas of a failed piece of a split batch only.

**Precision.** Counts are int64 totals of int32 per-batch counts. The activation value is
computed in float32 from the model's own (fp32, bf16 or fp16) pre-activation and summed in
float64 element by element, so sums are float64 sums of the values whatever the model's dtype.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange

from lensneurons.core.sites import Site
from lensneurons.corpora.corpus import Batch
from lensneurons.errors import HookShapeError

#: Totals reduced by maximum (all others are sums).
MAX_KEYS = ("max", "seq_mean_max")


class Accumulators:
    """Per-layer totals on the layer's device, fed by one hook per layer, committed per batch.

    Args:
        site: where the hooks read.
        n_groups: groups of the corpus.
        sequence_stats: also keep per-sequence means (their max, and all of them for medians).
        document_stats: also count, per unit, the rows (documents) with the unit active on at
            least one counted token, and the rows per group.
        value_stats: also keep sums, sums of squares and maxima of the activation values.
    """

    def __init__(self, site: Site, n_groups: int, sequence_stats: bool,
                 document_stats: bool = False, value_stats: bool = True) -> None:
        self.site = site
        self.n_groups = n_groups
        n_layers, width = site.n_layers, site.width
        self.sequence_stats = sequence_stats
        self.document_stats = document_stats
        self.value_stats = value_stats
        self.layers: list[dict[str, torch.Tensor]] = []
        for layer in range(n_layers):
            dev = site.layer_device(layer)
            state = {"active": torch.zeros(n_groups, width, dtype=torch.int64, device=dev)}
            if value_stats:
                state["sum"] = torch.zeros(n_groups, width, dtype=torch.float64, device=dev)
                state["sum_sq"] = torch.zeros(n_groups, width, dtype=torch.float64, device=dev)
                state["max"] = torch.full((n_groups, width), float("-inf"), device=dev)
            if sequence_stats:
                state["seq_mean_max"] = torch.full((n_groups, width), float("-inf"), device=dev)
            if document_stats:
                state["active_docs"] = torch.zeros(n_groups, width, dtype=torch.int64, device=dev)
            self.layers.append(state)
        self.n_tokens = torch.zeros(n_groups, dtype=torch.int64)
        self.n_sequences = torch.zeros(n_groups, dtype=torch.int64)
        self.n_docs = torch.zeros(n_groups, dtype=torch.int64)
        self.seq_means: list[list[torch.Tensor]] = [[] for _ in range(n_groups)]
        # Uncommitted work of the current batch: (layer, group, {key: delta}) per hook call,
        # the counted tokens and rows per group and the per-sequence means of each finished piece.
        self._deltas: list[tuple[int, int, dict[str, torch.Tensor]]] = []
        self._tokens: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._means: list[tuple[int, torch.Tensor]] = []
        self.fired = [0] * n_layers
        self._batch: Batch | None = None
        self._index: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._layer_means: list[torch.Tensor] = []

    def hooks(self) -> list[tuple[str, Any]]:
        """One ``(hook name, hook)`` per layer."""
        return [(self.site.read_hook(layer), self._hook(layer))
                for layer in range(len(self.layers))]

    # --- one batch: start a piece, finish it, commit or roll back -----------------------------
    def start(self, batch: Batch) -> None:
        """Prepare the hooks for a forward pass over ``batch`` (a batch or a piece of one)."""
        self._batch, self._index, self._layer_means = batch, {}, []
        self.fired = [0] * len(self.layers)

    def mark(self) -> tuple[int, int, int]:
        """A point to :meth:`rollback` to (before a piece of a split batch)."""
        return len(self._deltas), len(self._tokens), len(self._means)

    def rollback(self, mark: tuple[int, int, int] = (0, 0, 0)) -> None:
        """Drop what was recorded since ``mark`` (default: the whole uncommitted batch)."""
        del self._deltas[mark[0]:], self._tokens[mark[1]:], self._means[mark[2]:]
        self._batch, self._index, self._layer_means = None, {}, []

    def finish(self) -> None:
        """End a piece's forward pass: check every layer fired once, keep its sequence means."""
        if any(n != 1 for n in self.fired):
            raise HookShapeError(
                f"Collection hooks fired {self.fired} times per layer in one forward pass, "
                "expected once each; the model calls its MLP more than once per layer."
            )
        assert self._batch is not None
        self._tokens.append((self._batch.n_counted,
                             torch.bincount(self._batch.rows, minlength=self.n_groups)))
        if self.sequence_stats:
            means = torch.stack([m.cpu() for m in self._layer_means], dim=1)  # [B, L, D]
            for row, group in enumerate(self._batch.rows.tolist()):
                self._means.append((group, means[row].half()))
        self._batch, self._index, self._layer_means = None, {}, []

    def commit(self) -> None:
        """Add the recorded deltas of the whole batch into the totals."""
        for layer, group, delta in self._deltas:
            state = self.layers[layer]
            for key, value in delta.items():
                if key in MAX_KEYS:
                    torch.maximum(state[key][group], value, out=state[key][group])
                else:
                    state[key][group] += value
        for n_counted, n_rows in self._tokens:
            self.n_tokens += n_counted
            self.n_docs += n_rows
        for group, means in self._means:
            self.seq_means[group].append(means)
            self.n_sequences[group] += 1
        self._deltas, self._tokens, self._means = [], [], []

    # --- the hooks ----------------------------------------------------------------------------
    def _batch_index(
        self, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Counted positions (flat), their rows, and counted tokens per row, on ``device``."""
        if device not in self._index:
            assert self._batch is not None
            counted = self._batch.counted
            per_row = counted.sum(1)
            flat = counted.flatten().nonzero().squeeze(1)
            rows = torch.arange(counted.shape[0]).repeat_interleave(per_row)
            self._index[device] = (flat.to(device), rows.to(device),
                                   per_row.clamp(min=1).to(device))
        return self._index[device]

    def _hook(self, layer: int) -> Any:
        name = self.site.read_hook(layer)

        def accumulate(x: torch.Tensor, *, hook: Any) -> None:
            self.fired[layer] += 1
            batch = self._batch
            assert batch is not None
            units = self.site.units(x, name)
            flat, rows, per_row = self._batch_index(units.device)
            tokens = rearrange(units, "batch pos unit -> (batch pos) unit")
            picked = tokens.index_select(0, flat)
            positive = picked.gt(0)
            values = (self.site.values(picked.float())
                      if self.value_stats or self.sequence_stats else picked)
            deltas = []
            for group, start, end in batch.segments:
                # int32 per batch is far cheaper than int64; totals are int64.
                delta = {"active": positive[start:end].sum(0, dtype=torch.int32)}
                if self.value_stats:
                    total, square = _wide_sums(values, start, end)
                    delta.update(sum=total, sum_sq=square, max=values[start:end].amax(0))
                deltas.append((layer, group, delta))
            if self.sequence_stats:
                sums = torch.zeros(per_row.shape[0], values.shape[1], device=values.device)
                sums.index_add_(0, rows, values)
                means = sums / per_row[:, None]
                for (_, _, delta), (_, row_means) in zip(deltas, _rows_by_group(batch, means)):
                    delta["seq_mean_max"] = row_means.amax(0)
                self._layer_means.append(means)
            if self.document_stats:
                hits = torch.zeros(per_row.shape[0], positive.shape[1], dtype=torch.int32,
                                   device=positive.device).index_add_(0, rows, positive.int())
                for (_, _, delta), (_, fired) in zip(deltas, _rows_by_group(batch, hits.gt(0))):
                    delta["active_docs"] = fired.sum(0, dtype=torch.int32)
            self._deltas.extend(deltas)

        accumulate.__qualname__ = f"collect[{self.site.name}, layer {layer}]"
        return accumulate

    # --- totals in and out --------------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        """The committed totals on the CPU: ``[group, layer, unit]`` tensors and ``n_tokens``."""
        out = {key: torch.stack([s[key].cpu() for s in self.layers], dim=1)
               for key in self.layers[0]}
        out["n_tokens"] = self.n_tokens.clone()
        if self.sequence_stats:
            out["n_sequences"] = self.n_sequences.clone()
        if self.document_stats:
            out["n_docs"] = self.n_docs.clone()
        return out

    def means(self) -> list[torch.Tensor]:
        """Per group, the committed per-sequence means ``[sequence, layer, unit]`` (float16)."""
        width = (len(self.layers), self.site.width)
        return [torch.stack(m) if m else torch.zeros((0, *width), dtype=torch.float16)
                for m in self.seq_means]

    def load_state(self, state: dict[str, torch.Tensor], means: list[torch.Tensor]) -> None:
        """Start from saved totals (a checkpoint): the inverse of :meth:`state`, :meth:`means`."""
        for layer, layer_state in enumerate(self.layers):
            for key, total in layer_state.items():
                total.copy_(state[key][:, layer])
        self.n_tokens.copy_(state["n_tokens"])
        if self.sequence_stats:
            self.n_sequences.copy_(state["n_sequences"])
            self.seq_means = [list(group_means.unbind(0)) for group_means in means]
        if self.document_stats:
            self.n_docs.copy_(state["n_docs"])


def results(state: dict[str, torch.Tensor], means: list[torch.Tensor] | None) -> dict[str, Any]:
    """The fields of :class:`~lensneurons.ActivationStats` from totals and sequence means."""
    out = {key: value for key, value in state.items()}
    if means is not None:
        out["seq_mean_median"] = torch.stack([
            m.float().median(dim=0).values if len(m) else torch.zeros_like(state["max"][0])
            for m in means
        ])
    return out


def _wide_sums(values: torch.Tensor, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 sums of ``values[start:end]`` and of their squares, over rows, element by element.

    The rows go through float64 in chunks: about 512 KiB on the CPU, where a chunk that stays in
    cache makes the float64 pass as fast as a float32 one, and 256 MiB on accelerators, which
    bounds the temporary memory.
    """
    budget = 2**19 if values.device.type == "cpu" else 2**28
    step = max(1, budget // (8 * values.shape[1]))
    total = square = None
    for lo in range(start, end, step):
        wide = values[lo:min(end, lo + step)].double()
        part, part_sq = wide.sum(0), wide.square_().sum(0)
        total = part if total is None else total.add_(part)
        square = part_sq if square is None else square.add_(part_sq)
    assert total is not None and square is not None  # every segment has a counted token
    return total, square


def _rows_by_group(batch: Batch, per_row: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    groups = batch.rows.tolist()
    out, start = [], 0
    for group in batch.rows.unique_consecutive().tolist():
        end = start + groups.count(group)
        out.append((group, per_row[start:end]))
        start = end
    return out
