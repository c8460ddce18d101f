"""The hook side of :func:`lensneurons.collect`: per-layer accumulators fed by one hook per layer.

Private to :mod:`lensneurons.stats`, which runs the pass. Each hook selects the counted tokens of
the batch and adds per-group counts, sums, sums of squares and maxima into tensors on the layer's
device; the batch's index tensors are built once per device, not once per layer.
"""

from __future__ import annotations

from typing import Any

import torch

from lensneurons.corpus import Batch
from lensneurons.sites import Site


class Accumulators:
    """Per-layer accumulators on the layer's device, fed by one hook per layer."""

    def __init__(self, site: Site, n_groups: int, sequence_stats: bool) -> None:
        self.site = site
        n_layers, width = site.view.n_layers, site.width
        self.sequence_stats = sequence_stats
        self.layers = []
        for layer in range(n_layers):
            dev = site.view.layer_device(layer)
            state = {
                "active": torch.zeros(n_groups, width, dtype=torch.int64, device=dev),
                "sum": torch.zeros(n_groups, width, dtype=torch.float64, device=dev),
                "sum_sq": torch.zeros(n_groups, width, dtype=torch.float64, device=dev),
                "max": torch.full((n_groups, width), float("-inf"), device=dev),
            }
            if sequence_stats:
                state["seq_mean_max"] = torch.full((n_groups, width), float("-inf"), device=dev)
            self.layers.append(state)
        self.seq_means: list[list[torch.Tensor]] = [[] for _ in range(n_groups)]
        self.n_sequences = torch.zeros(n_groups, dtype=torch.int64)
        self.fired = [0] * n_layers
        self._batch: Batch | None = None
        self._index: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._layer_means: list[torch.Tensor] = []

    def hooks(self) -> list[tuple[str, Any]]:
        return [(self.site.read_hook(layer), self._hook(layer))
                for layer in range(len(self.layers))]

    def start(self, batch: Batch) -> None:
        self._batch, self._index, self._layer_means = batch, {}, []
        self.fired = [0] * len(self.layers)

    def finish(self) -> None:
        if any(n != 1 for n in self.fired):
            raise RuntimeError(
                f"Collection hooks fired {self.fired} times per layer in one forward pass, "
                "expected once each; the model calls its MLP more than once per layer."
            )
        if self.sequence_stats:
            assert self._batch is not None
            means = torch.stack([m.cpu() for m in self._layer_means], dim=1)  # [B, L, D]
            for row, group in enumerate(self._batch.rows.tolist()):
                self.seq_means[group].append(means[row].half())
                self.n_sequences[group] += 1

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
        state = self.layers[layer]
        name = self.site.read_hook(layer)

        def accumulate(x: torch.Tensor, *, hook: Any) -> None:
            self.fired[layer] += 1
            units = self.site.units(x, name)
            flat, rows, per_row = self._batch_index(units.device)
            picked = units.reshape(-1, units.shape[-1]).index_select(0, flat).float()
            values = self.site.values(picked)
            assert self._batch is not None
            for group, start, end in self._batch.segments:
                vals = values[start:end]
                # int32 per batch is far cheaper than int64; float32 sums add into float64 totals.
                state["active"][group] += picked[start:end].gt(0).sum(0, dtype=torch.int32)
                state["sum"][group] += vals.sum(0)
                torch.maximum(state["max"][group], vals.amax(0), out=state["max"][group])
            if self.sequence_stats:
                n_rows = self._batch.counted.shape[0]
                sums = torch.zeros(n_rows, values.shape[1], device=values.device)
                sums.index_add_(0, rows, values)
                means = sums / per_row[:, None]
                for group, row_means in _rows_by_group(self._batch, means):
                    torch.maximum(state["seq_mean_max"][group], row_means.amax(0),
                                  out=state["seq_mean_max"][group])
                self._layer_means.append(means)
            squares = values.square_() if values is not picked else values.square()
            for group, start, end in self._batch.segments:
                state["sum_sq"][group] += squares[start:end].sum(0)

        accumulate.__qualname__ = f"collect[{self.site.name}, layer {layer}]"
        return accumulate

    def results(self) -> dict[str, Any]:
        out = {key: torch.stack([s[key].cpu() for s in self.layers], dim=1)
               for key in self.layers[0]}
        if self.sequence_stats:
            out["n_sequences"] = self.n_sequences.clone()
            out["seq_mean_median"] = torch.stack([
                torch.stack(means).float().median(dim=0).values if means
                else torch.zeros_like(out["max"][0])
                for means in self.seq_means
            ])
        return out


def _rows_by_group(batch: Batch, per_row: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    groups = batch.rows.tolist()
    out, start = [], 0
    for group in batch.rows.unique_consecutive().tolist():
        end = start + groups.count(group)
        out.append((group, per_row[start:end]))
        start = end
    return out
