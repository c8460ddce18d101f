"""The hooks of one PLND run (:func:`lensneurons.plnd`) and the per-group counts they feed.

:class:`Scorer` is the :class:`~lensneurons.stats.passes.Work` of PLND's batch loop: its hooks
compute each document's importance scores during a pass (:mod:`lensneurons.detect._plnd_scores`);
once the pass has wholly run, each document's top units per layer are kept, and they are added to
the group's counts when the whole batch has passed, so an interrupted run holds whole batches only.
"""

from __future__ import annotations

from typing import Any

import torch

from lensneurons.core.model import ModelView
from lensneurons.core.sites import get_site
from lensneurons.corpora.corpus import Batch
from lensneurons.detect import _plnd_scores as scores
from lensneurons.errors import HookShapeError, ParameterError, UnsupportedModelError


class Scorer:
    """The hooks of one PLND run and the per-group activation counts they feed.

    Args:
        view: the model.
        sites: the sites scored.
        top_rates: per site, the share of a layer's units activated per document.
        variant: ``"paper"`` or ``"reference-code"``.
        n_groups: groups of the corpus.
        keep: also keep every document's raw scores (:attr:`kept`, :attr:`kept_rows`).

    Attributes:
        counts: per site, ``[group, layer, unit]`` documents of the committed batches with the
            unit among their top units.
        n_docs: committed documents per group.
        batches: committed batches.
    """

    def __init__(self, view: ModelView, sites: tuple[str, ...], top_rates: dict[str, float],
                 variant: str, n_groups: int, *, keep: bool = False) -> None:
        self.view, self.sites, self.variant = view, sites, variant
        self.widths = {s: get_site(view, s).width for s in sites}
        self.top = {}
        for s in sites:
            self.top[s] = round(top_rates[s] * self.widths[s])
            if self.top[s] < 1:
                raise ParameterError(
                    f"top_rate={top_rates[s]!r} activates no unit of site {s!r} "
                    f"({self.widths[s]} units per layer); use at least {1 / self.widths[s]:.3g}.")
        n_layers = view.n_layers
        # per (site, layer): [group, unit] counts on the layer's device, copied out once (counts)
        self._counts = {(s, layer): torch.zeros(n_groups, self.widths[s], dtype=torch.int64,
                                                device=view.layer_device(layer))
                        for s in sites for layer in range(n_layers)}
        self.n_docs = torch.zeros(n_groups, dtype=torch.int64)
        self.points = self._points()
        self.pending: dict[tuple[str, int], torch.Tensor] = {}
        self.captured: dict[int, dict[str, torch.Tensor]] = {}
        self.scales: dict[int, float] = {}
        self.counted: torch.Tensor | None = None
        self.batches = 0
        # Finished pieces of the running batch: rows, top-unit flags and (keep) raw scores.
        self.finished: list[tuple[torch.Tensor, dict[tuple[str, int], torch.Tensor],
                                  dict[str, torch.Tensor]]] = []
        self.keep = keep
        self.kept: dict[str, list[torch.Tensor]] = {s: [] for s in sites}
        self.kept_rows: list[torch.Tensor] = []
        self.w_out_norm: dict[int, torch.Tensor] = {}
        if "mlp" in sites and variant == "paper":
            for layer in range(n_layers):
                self.w_out_norm[layer] = self._w_out(layer).float().norm(dim=1)
        last = n_layers - 1
        self.stop_at = view.hook_name(last, self.points["mlp"] if "mlp" in sites else
                                      "attn.hook_z")

    def _points(self) -> dict[str, str]:
        hooks = self.view.model.hook_dict
        points = {"mlp": "mlp.hook_post"}
        if self.variant == "reference-code":
            points["mlp"] = "mlp.hook_pre_linear" if self.view.gated else "mlp.hook_pre"
        rot = all(f"blocks.0.attn.hook_rot_{x}" in hooks for x in "qk")
        points["q"], points["k"] = (("attn.hook_rot_q", "attn.hook_rot_k") if rot
                                    else ("attn.hook_q", "attn.hook_k"))
        points.update(v="attn.hook_v", scores="attn.hook_attn_scores", z="attn.hook_z")
        return points

    def _w_out(self, layer: int) -> torch.Tensor:
        w_out = getattr(getattr(self.view.model.blocks[layer], "mlp", None), "W_out", None)
        if not isinstance(w_out, torch.Tensor) or tuple(w_out.shape) != (
                self.view.d_mlp, self.view.d_model):
            raise UnsupportedModelError(
                f"PLND's MLP score needs W_out [d_mlp, d_model] of block {layer}; "
                f"{self.view.architecture} does not expose it. Use variant='reference-code' or "
                "sites without 'mlp'.")
        return w_out.detach()

    def hooks(self) -> list[tuple[str, Any]]:
        """``(hook name, fn)`` for every layer and needed point."""
        out = []
        qk = any(s in self.sites for s in ("attn.q", "attn.k"))
        for layer in range(self.view.n_layers):
            if "mlp" in self.sites:
                out.append((self.view.hook_name(layer, self.points["mlp"]), self._mlp(layer)))
            if "attn.v" in self.sites:
                out.append((self.view.hook_name(layer, self.points["z"]), self._v(layer)))
            if qk:
                for key in ("q", "k", "v", "scores"):
                    out.append((self.view.hook_name(layer, self.points[key]),
                                self._capture(layer, key)))
        return out

    @property
    def counts(self) -> dict[str, torch.Tensor]:
        """Per site, ``[group, layer, unit]`` counts of the committed documents (on the CPU)."""
        return {s: torch.stack([self._counts[s, layer].cpu()
                                for layer in range(self.view.n_layers)], 1) for s in self.sites}

    # --- the work around each pass (lensneurons.stats.passes.Work) -------------------------------
    def start(self, piece: Batch) -> None:
        """Before a pass: forget the last pass's partial results."""
        self.abort()
        self.counted = piece.counted

    def finish(self, piece: Batch) -> None:
        """After a whole pass: keep each document's top units (and raw scores) uncommitted."""
        flags = {}
        for (site, layer), score in self.pending.items():
            order = torch.sort(score, dim=1, descending=True, stable=True).indices
            top = torch.zeros_like(score, dtype=torch.int64)
            top.scatter_(1, order[:, :self.top[site]], 1)
            flags[site, layer] = top
        raw = {site: torch.stack([self.pending[site, layer].cpu()
                                  for layer in range(self.view.n_layers)], 1)
               for site in self.sites} if self.keep else {}
        self.finished.append((piece.rows, flags, raw))
        self.pending.clear()

    def abort(self) -> None:
        """A pass failed: drop its partial scores."""
        self.pending.clear()
        self.captured.clear()

    def commit(self) -> None:
        """The batch has passed: add its documents' top units to their groups' counts."""
        for rows, flags, raw in self.finished:
            for (site, layer), top in flags.items():
                counts = self._counts[site, layer]
                counts.index_add_(0, rows.to(counts.device), top.to(counts.device))
            self.n_docs.index_add_(0, rows, torch.ones_like(rows))
            if self.keep:
                for site, site_scores in raw.items():
                    self.kept[site].append(site_scores)
                self.kept_rows.append(rows)
        self.finished.clear()
        self.batches += 1

    def rollback(self) -> None:
        """The run stops: drop the unfinished batch."""
        self.finished.clear()
        self.abort()

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        assert self.counted is not None
        return self.counted.to(x.device)

    def _mlp(self, layer: int) -> Any:
        def hook(x: torch.Tensor, hook: Any) -> None:
            self._width(x, "mlp", layer)
            if self.variant == "paper":
                score = scores.ffn_scores(x, self._mask(x), self.w_out_norm[layer])
            else:
                score = scores.ffn_reference(x, self._mask(x))
            self.pending["mlp", layer] = score
        return hook

    def _v(self, layer: int) -> Any:
        def hook(z: torch.Tensor, hook: Any) -> None:
            self._heads(z, layer, self.view.n_heads)
            self.pending["attn.v", layer] = scores.v_scores(
                z, self._mask(z), self.view.n_kv_heads, self.variant)
        return hook

    def _capture(self, layer: int, key: str) -> Any:
        def hook(x: torch.Tensor, hook: Any) -> None:
            got = self.captured.setdefault(layer, {})
            got[key] = x
            if len(got) == 4:
                self._qk(layer, self.captured.pop(layer))
        return hook

    def _qk(self, layer: int, got: dict[str, torch.Tensor]) -> None:
        q, k, v, s = got["q"], got["k"], got["v"], got["scores"]
        self._heads(q, layer, self.view.n_heads)
        self._heads(k, layer, self.view.n_kv_heads)
        self._heads(v, layer, self.view.n_kv_heads)
        if layer not in self.scales:
            where = f"{self.points['q']}/{self.points['k']}"
            self.scales[layer] = scores.fit_scale(q, k, s, where)
        q_score, k_score = scores.qk_scores(q, k, v, s, self._mask(q), self.scales[layer],
                                            self.variant)
        if "attn.q" in self.sites:
            self.pending["attn.q", layer] = q_score
        if "attn.k" in self.sites:
            self.pending["attn.k", layer] = k_score

    def _width(self, x: torch.Tensor, site: str, layer: int) -> None:
        if x.shape[-1] != self.widths[site]:
            raise HookShapeError(
                f"Block {layer}'s {self.points['mlp']} gave width {x.shape[-1]}, but the MLP "
                f"has {self.widths[site]} units (a TransformerLens adapter gap).")

    def _heads(self, x: torch.Tensor, layer: int, heads: int) -> None:
        if x.dim() != 4 or x.shape[2] != heads or x.shape[3] != self.view.d_head:
            raise HookShapeError(
                f"An attention hook of block {layer} gave shape {tuple(x.shape)}, expected "
                f"[batch, pos, {heads}, {self.view.d_head}] (a TransformerLens adapter gap).")
