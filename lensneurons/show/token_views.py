"""Token views (circuitsvis): how strongly each group's neurons fire on each token of a text.

:func:`token_activity` returns a :class:`TokenView`; it renders in notebooks and in a file written
with :func:`save_html`, without network (circuitsvis's JavaScript bundle is inlined, never loaded
from a CDN). The views need the ``viz`` extra (``pip install "lensneurons[viz]"``). They are also
importable from :mod:`lensneurons.show`.

Examples:
    >>> import lensneurons as ln
    >>> model = ln.organism.load()
    >>> sets = ln.NeuronSets({"some": ln.NeuronSet.from_indices([[0, 1], [], [], []], width=2048)})
    >>> table = ln.viz.token_activity_table(model, "Le chat dort.", sets)
    >>> list(table.columns)
    ['some']
"""

from __future__ import annotations

import html as html_lib
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lensneurons import errors
from lensneurons.core.model import ModelView
from lensneurons.core.sites import Site, get_site
from lensneurons.errors import EmptyGroupError, EmptyTokenizationError, NoGroupsError
from lensneurons.neurons import NeuronSet, NeuronSets

#: The group name of a single :class:`~lensneurons.NeuronSet` passed to the token views.
SINGLE_GROUP = "neurons"


class _ActivityHook:
    """Reads one layer's units and stores, per token, the sum of ``a`` over each group's units.

    Each group is summed on its own, so a group's numbers do not depend on the other groups.
    """

    def __init__(self, site: Site, layer: int, indices: list[torch.Tensor],
                 out: dict[int, torch.Tensor]) -> None:
        self.site, self.layer, self.indices, self.out = site, layer, indices, out
        self._on: dict[torch.device, list[torch.Tensor]] = {}

    def __repr__(self) -> str:
        sizes = [len(index) for index in self.indices]
        return f"_ActivityHook(read layer {self.layer}, units per group {sizes})"

    def __call__(self, x: torch.Tensor, *, hook: Any) -> None:
        if x.device not in self._on:
            self._on[x.device] = [index.to(x.device) for index in self.indices]
        units = self.site.units(x, hook.name)[0]  # [pos, width]
        sums = [self.site.values(units[:, index]).float().sum(-1) for index in self._on[x.device]]
        self.out[self.layer] = torch.stack(sums, dim=-1).double().cpu()  # [pos, group]


def _select(neurons: Any, groups: Sequence[str] | None) -> tuple[NeuronSets, dict[str, NeuronSet]]:
    if isinstance(neurons, NeuronSet):
        all_sets = NeuronSets({SINGLE_GROUP: neurons})
    elif isinstance(neurons, NeuronSets):
        all_sets = neurons
    elif isinstance(neurons, Mapping):
        all_sets = NeuronSets(neurons)
    else:
        raise errors.ParameterError(
            f"Expected NeuronSets (e.g. from ln.lape), a {{group: NeuronSet}} mapping or one "
            f"NeuronSet, got {type(neurons).__name__}."
        )
    if groups is None:
        names = list(all_sets)
    else:
        names = [groups] if isinstance(groups, str) else list(groups)
    if not names:
        raise NoGroupsError("No groups to show: pass neuron sets with at least one group.")
    chosen = {name: all_sets[name] for name in names}
    for name, neuron_set in chosen.items():
        if len(neuron_set) == 0:
            raise EmptyGroupError(
                f"The neuron set of group {name!r} has no units, so it has no mean activity. "
                f"Leave it out with groups=[...] (groups with units: "
                f"{[g for g in all_sets if len(all_sets[g])]})."
            )
    return all_sets, chosen


def _encode(view: ModelView, text: str) -> tuple[torch.Tensor, int]:
    """Token ids as the corpus makes them, and the position where the text's own tokens start.

    The BOS comes first when the model expects one (:attr:`ModelView.bos_token_id`).
    """
    if not isinstance(text, str):
        raise errors.InvalidTextError(f"text must be a string, got {type(text).__name__}.")
    ids = list(view.tokenizer(text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise EmptyTokenizationError(
            f"The text {text!r} tokenizes to no token; pass a non-empty text."
        )
    bos = view.bos_token_id
    start = 0 if bos is None else 1
    room = view.n_ctx - start
    if len(ids) > room:
        warnings.warn(
            f"The text has {len(ids)} tokens, more than the model's context ({room} after BOS); "
            f"only its first {room} tokens are shown.", stacklevel=3,
        )
        ids = ids[:room]
    if bos is not None:
        ids = [bos, *ids]
    return torch.tensor(ids, dtype=torch.int64), start


def token_activity_table(
    model: Any, text: str, neurons: NeuronSets | Mapping[str, NeuronSet] | NeuronSet, *,
    groups: Sequence[str] | None = None, site: str = "mlp",
) -> pd.DataFrame:
    """Mean activation of each group's neurons on each token of ``text`` (one forward pass).

    For token ``t`` and group ``g`` the value is ``sum of a[l, t, j] over the units (l, j) of g's
    set / number of units of g's set``: the mean over all of the set's units, across layers, of
    the activation value ``a`` (``act(gate pre-activation)`` on the ``"mlp"`` site, see
    :mod:`lensneurons.core.sites`). One forward pass reads the units with hooks registered through
    ``model.hooks`` (removed on exit, even on error); nothing else of the pass is kept. The text
    is tokenized as :class:`lensneurons.Corpus` does (BOS first when the model expects one); the
    BOS is part of the pass but not of the table.

    Args:
        model: a TransformerLens model (or a :class:`~lensneurons.ModelView`).
        text: the text, e.g. a sentence that switches language.
        neurons: sets per group (``ln.lape(...)``), a ``{group: NeuronSet}`` mapping, or one
            :class:`~lensneurons.NeuronSet` (then the group is called ``"neurons"``).
        groups: the groups to show, in this order (default: every group of ``neurons``).
        site: the site the sets were detected on.

    Returns:
        A float64 table, one row per token of the text (index levels ``position``, the position
        in the model's input, and ``token``, the decoded token) and one column per group.

    Raises:
        EmptyTokenizationError: ``text`` tokenizes to no token.
        ShapeMismatchError: the sets do not fit the model, or were detected on another site.
        ModelMismatchError: the sets record a fingerprint of another model.
        UnknownGroupError: a group of ``groups`` has no set.
        EmptyGroupError: a chosen group's set has no units.
        NoGroupsError: ``groups`` is empty.

    Examples:
        >>> import lensneurons as ln
        >>> model = ln.organism.load()
        >>> fr = ln.NeuronSet.from_indices([[0, 1], [], [7], []], width=model.cfg.d_mlp)
        >>> table = ln.viz.token_activity_table(model, "Le chat dort.", {"fr": fr})
        >>> table.index.get_level_values("token").tolist()
        ['Le', ' ch', 'at', ' d', 'ort', '.']
        >>> list(table.columns), table.index.get_level_values("position")[0]
        (['fr'], 1)
    """
    view = model if isinstance(model, ModelView) else ModelView(model)
    all_sets, chosen = _select(neurons, groups)
    for name, neuron_set in all_sets.items():
        if neuron_set.site != site:
            raise errors.ShapeMismatchError(
                f"The set of group {name!r} was detected on site {neuron_set.site!r}, not "
                f"{site!r}; pass site={neuron_set.site!r}."
            )
    all_sets.check_model(view.model)
    where = get_site(view, site)
    ids, start = _encode(view, text)

    names = list(chosen)
    sizes = torch.tensor([len(chosen[name]) for name in names], dtype=torch.float64)
    out: dict[int, torch.Tensor] = {}
    hooks = []
    for layer in range(view.n_layers):
        indices = [chosen[name].indices[layer] for name in names]
        if any(len(index) for index in indices):
            hooks.append((where.read_hook(layer), _ActivityHook(where, layer, indices, out)))
    with torch.inference_mode(), view.model.hooks(fwd_hooks=hooks):
        view.model(ids.unsqueeze(0).to(view.input_device))
    missing = [hook.layer for _, hook in hooks if hook.layer not in out]
    if missing:
        raise errors.LensNeuronsError(
            f"The read hooks of layers {missing} never fired during the forward pass; "
            "the model does not run its hook points (report it with the model name)."
        )
    totals = torch.stack(list(out.values())).sum(0)[start:] / sizes  # [pos, group]
    tokenizer = view.tokenizer
    tokens = [tokenizer.decode([int(i)]) for i in ids[start:]]
    index = pd.MultiIndex.from_arrays([range(start, len(ids)), tokens],
                                      names=["position", "token"])
    return pd.DataFrame(totals.numpy(), index=index,
                        columns=pd.Index(names, name="group"))


class TokenView:
    """A circuitsvis token view that renders without network, with the numbers it shows.

    Notebooks display it (``_repr_html_``), ``str(view)`` is its HTML fragment, :meth:`save`
    (or :func:`save_html`) writes a standalone page. The HTML inlines circuitsvis's own JavaScript
    bundle (circuitsvis's "local" rendering), so it never loads anything from a CDN; it weighs
    about 1.3 MB.

    Attributes:
        table: the tokens x groups table shown (see :func:`token_activity_table`).
        rendered: the circuitsvis ``RenderedHTML``, whose ``str()`` loads the bundle from a CDN.
    """

    def __init__(self, table: pd.DataFrame, rendered: Any) -> None:
        self.table = table
        self.rendered = rendered

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> TokenView:
        """The view of a tokens x groups table such as :func:`token_activity_table` returns.

        One group gives circuitsvis's ``colored_tokens``, several ``colored_tokens_multi`` with
        one channel per group.

        Raises:
            ImportError: circuitsvis is not installed.
            NoGroupsError: the table has no column.
        """
        tokens_module = _circuitsvis_tokens()
        if table.shape[1] == 0:
            raise NoGroupsError("The table has no group column to show.")
        tokens = _token_strings(table)
        values = torch.tensor(table.to_numpy(dtype=float), dtype=torch.float64)
        if table.shape[1] == 1:
            column = values[:, 0]
            rendered = tokens_module.colored_tokens(
                tokens, column.tolist(), min_value=min(float(column.min()), -1e-7),
                max_value=max(float(column.max()), 1e-7),
            )
        else:
            rendered = tokens_module.colored_tokens_multi(
                tokens, values, labels=[str(c) for c in table.columns])
        return cls(table, rendered)

    @property
    def html(self) -> str:
        """The self-contained HTML fragment (``<div>`` + inline ``<script>``)."""
        return _script_safe(self.rendered.local_src)

    def _repr_html_(self) -> str:
        # circuitsvis's own _repr_html_ pings google.com to choose the CDN; never go online.
        return self.html

    def __html__(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html

    def __repr__(self) -> str:
        groups = ", ".join(str(c) for c in self.table.columns)
        return f"TokenView({len(self.table)} tokens; groups {groups})"

    def show_code(self) -> str:
        """The HTML fragment (offline, unlike circuitsvis's ``show_code``)."""
        return self.html

    def save(self, path: str | os.PathLike[str], *, title: str = "Token activity") -> Path:
        """Write a standalone HTML page; see :func:`save_html`."""
        return save_html(self, path, title=title)


def token_activity(
    model: Any, text: str, neurons: NeuronSets | Mapping[str, NeuronSet] | NeuronSet, *,
    groups: Sequence[str] | None = None, site: str = "mlp",
) -> TokenView:
    """A circuitsvis view of how strongly each group's neurons fire on each token of ``text``.

    Each token is coloured by the mean activation of a group's neurons on it (see
    :func:`token_activity_table`, computed in one forward pass). With several groups the view is
    circuitsvis's ``colored_tokens_multi``, one channel per group (pick a channel with its
    button; hover a token for every group's value); with one group, ``colored_tokens``. The BOS
    is not shown. The view renders offline: display it in a notebook, or write it with
    ``view.save(path)``.

    Args:
        model: a TransformerLens model (or a :class:`~lensneurons.ModelView`).
        text: the text, e.g. a sentence that switches language.
        neurons: sets per group (``ln.lape(...)``), a ``{group: NeuronSet}`` mapping, or one
            :class:`~lensneurons.NeuronSet`.
        groups: the groups to show, in this order (default: every group of ``neurons``).
        site: the site the sets were detected on.

    Returns:
        A :class:`TokenView`; its ``table`` holds the numbers shown.

    Raises:
        ImportError: circuitsvis is not installed (``pip install "lensneurons[viz]"``).
        EmptyTokenizationError: ``text`` tokenizes to no token.
        ShapeMismatchError: the sets do not fit the model, or were detected on another site.
        ModelMismatchError: the sets record a fingerprint of another model.
        UnknownGroupError: a group of ``groups`` has no set.
        EmptyGroupError: a chosen group's set has no units.

    Examples:
        >>> import lensneurons as ln
        >>> model = ln.organism.load()
        >>> d_mlp = model.cfg.d_mlp
        >>> neurons = ln.NeuronSets({
        ...     "fr": ln.NeuronSet.from_indices([[0, 1], [], [7], []], width=d_mlp),
        ...     "ru": ln.NeuronSet.from_indices([[], [3], [], [5, 9]], width=d_mlp),
        ... })
        >>> view = ln.viz.token_activity(model, "Le chat dort. Кошка спит.", neurons)
        >>> view
        TokenView(12 tokens; groups fr, ru)
        >>> view.table.shape
        (12, 2)
        >>> "unpkg.com" in str(view)  # the bundle is inlined: no CDN
        False

        In a notebook the view displays itself; ``view.save("activity.html")`` writes a page.
    """
    table = token_activity_table(model, text, neurons, groups=groups, site=site)
    return TokenView.from_table(table)


def save_html(view: Any, path: str | os.PathLike[str], *, title: str = "Token activity") -> Path:
    """Write a view as a standalone UTF-8 HTML page that renders offline.

    Args:
        view: a :class:`TokenView`, a circuitsvis ``RenderedHTML`` (its inline-bundle
            ``local_src`` is written, not its CDN form) or an HTML fragment.
        path: the file to write (parents are created).
        title: the page title.

    Returns:
        The path written.

    Examples:
        >>> import tempfile, pathlib
        >>> folder = tempfile.mkdtemp()
        >>> path = save_html("<p>hello</p>", pathlib.Path(folder) / "view.html")
        >>> "<p>hello</p>" in path.read_text(encoding="utf-8")
        True
    """
    if isinstance(view, TokenView):
        fragment = view.html
    elif hasattr(view, "local_src"):
        fragment = _script_safe(view.local_src)
    elif isinstance(view, str):
        fragment = view
    else:
        raise errors.ParameterError(
            f"Expected a TokenView, a circuitsvis RenderedHTML or an HTML string, got "
            f"{type(view).__name__}."
        )
    page = (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html_lib.escape(title)}</title>\n</head>\n<body>\n{fragment}\n</body>\n</html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _circuitsvis_tokens() -> Any:
    try:
        import circuitsvis.tokens
    except ImportError as err:
        raise ImportError(
            "Token views need circuitsvis: pip install \"lensneurons[viz]\" "
            "(or pip install circuitsvis)."
        ) from err
    return circuitsvis.tokens


def _token_strings(table: pd.DataFrame) -> list[str]:
    if isinstance(table.index, pd.MultiIndex) and "token" in table.index.names:
        return [str(t) for t in table.index.get_level_values("token")]
    return [str(t) for t in table.index]


def _script_safe(fragment: str) -> str:
    r"""Escape ``<`` inside the props of circuitsvis's final ``CircuitsVis.render(...)`` call.

    circuitsvis writes the props as JSON inside ``<script>`` without escaping, so a token such as
    ``</script>`` would end the script early. ``<`` only occurs inside JSON strings there, where
    ``\u003c`` means the same character.
    """
    head, call, rest = fragment.rpartition("CircuitsVis.render(")
    if not call:
        return fragment
    body, end, tail = rest.rpartition("</script>")
    if not end:
        return fragment
    return head + call + body.replace("<", "\\u003c") + end + tail
