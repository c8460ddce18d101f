"""Latent-language curves (Wendler et al. 2024): which language does the model think in.

For each prompt the logit lens reads the last position at every depth (by default the output of
every block: depth ``d`` is the output of block ``d - 1``, depth 0 the embeddings); P(lang) is the
summed probability of Start(w_lang), the tokens that begin the answer in that language. Items are
dropped, and counted, when a word is missing, when the English word is a substring of the target
word, when a Start(w) set is empty, or when the sets of two measured languages intersect (so a
token cannot count for both). The result holds per-item values; means come with 95% intervals
(normal approximation, or a seeded percentile bootstrap).

P(lang) is not a distribution over languages: the values sum to less than 1. The tuned lens is a
robustness check only: trained toward the final (target-language) prediction, it can optimise the
English signal away.

Examples:
    >>> import lensneurons as ln
    >>> from lensneurons.lens import latent_language, prompts
    >>> model = ln.organism.load()
    >>> r = latent_language(model, prompts.translation(src="fr", tgt="de", limit=30))
    >>> r.table().columns.tolist()
    ['depth', 'quantity', 'mean', 'lo', 'hi', 'n']

"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView
from lensneurons.core.result import Result
from lensneurons.errors import (
    EmptyTokenSetError,
    NoItemsLeftError,
    ParameterError,
    UnknownLanguageError,
)
from lensneurons.lens.logit import LensSpec, logit_lens
from lensneurons.lens.prompts import LensItem
from lensneurons.lens.tokens import start_tokens

_Z95 = 1.959964


@dataclass
class LatentLanguageResult(Result):
    """Per-depth language probabilities and entropy over the kept items.

    Attributes:
        depths: lens depths (``1..L``, every block's output, by default; depth ``d`` is the
            output of block ``d - 1``, depth 0 the embeddings).
        languages: measured languages, in order.
        probs: P(lang) per item, ``[depth, item, lang]``.
        entropy: next-token entropy in bits, ``[depth, item]``.
        items: the kept items, aligned with the item axis.
        dropped: reason -> number of items dropped for it.
        single_token_fraction: language -> share of words that are one token.
        ci: ``"normal"`` or ``"bootstrap"``.
        label: a name for legends (e.g. ``"baseline"``).
        fingerprint: the model's fingerprint (:meth:`ModelView.fingerprint`): ``load(path,
            model)`` refuses the result of another model.
        decoder: how the lens decoded (``LensResult.decoder``): ``{"name": "logit_lens"}``,
            ``"tuned_lens"`` or ``"patchscope"`` with its target prompt.

    ``.table()`` is the long table of means and intervals; ``.plot()`` the Wendler curves.
    """

    depths: list[int]
    languages: tuple[str, ...]
    probs: Float[torch.Tensor, "depth item lang"]
    entropy: Float[torch.Tensor, "depth item"]
    items: list[LensItem]
    dropped: dict[str, int] = field(default_factory=dict)
    single_token_fraction: dict[str, float] = field(default_factory=dict)
    ci: str = "normal"
    label: str = ""
    fingerprint: dict[str, Any] = field(default_factory=dict, repr=False)
    decoder: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"LatentLanguageResult(languages={self.languages}, depths={len(self.depths)}, "
                f"n_items={self.n_items}, dropped={self.dropped}, "
                f"decoder={self.decoder.get('name', '?')!r})")

    @property
    def n_items(self) -> int:
        """Number of items kept."""
        return len(self.items)

    def values(self, quantity: str) -> Float[torch.Tensor, "depth item"]:
        """Per-item values of a language's probability or of ``"entropy"`` (bits)."""
        if quantity == "entropy":
            return self.entropy
        if quantity not in self.languages:
            raise UnknownLanguageError(
                f"{quantity!r} was not measured; ask for one of {self.languages} or 'entropy'."
            )
        return self.probs[..., self.languages.index(quantity)]

    def mean(self, quantity: str) -> Float[torch.Tensor, " depth"]:
        """Mean over items per depth of P(``quantity``) or of ``"entropy"``."""
        return self.values(quantity).mean(1)

    def interval(
        self, quantity: str, *, n_boot: int = 1000, seed: int = 0
    ) -> tuple[Float[torch.Tensor, " depth"], Float[torch.Tensor, " depth"]]:
        """95% interval of the per-depth mean, ``(lo, hi)``, each ``[depth]``.

        Raises:
            UnknownLanguageError: ``quantity`` was not measured.
            ParameterError: ``n_boot`` is not an integer >= 1, or ``seed`` not one >= 0.
        """
        n_boot = _checks.positive_int(n_boot, "n_boot")
        seed = _checks.positive_int(seed, "seed", minimum=0)
        x = self.values(quantity).double()
        n = x.shape[1]
        if self.ci == "bootstrap" and n > 1:
            gen = torch.Generator().manual_seed(seed)
            idx = torch.randint(0, n, (n_boot, n), generator=gen)
            boots = x[:, idx].mean(-1)  # [depth, n_boot]
            lo, hi = boots.quantile(0.025, dim=1), boots.quantile(0.975, dim=1)
            return lo.float(), hi.float()
        m = x.mean(1)
        half = _Z95 * x.std(1, unbiased=True) / n**0.5 if n > 1 else torch.zeros_like(m)
        return (m - half).float(), (m + half).float()

    def table(self) -> pd.DataFrame:
        """Long table: depth, quantity (a language or ``"entropy"``), mean, lo, hi, n."""
        rows = []
        for quantity in (*self.languages, "entropy"):
            m, (lo, hi) = self.mean(quantity), self.interval(quantity)
            for i, depth in enumerate(self.depths):
                rows.append({"depth": depth, "quantity": quantity, "mean": float(m[i]),
                             "lo": float(lo[i]), "hi": float(hi[i]), "n": self.n_items})
        return pd.DataFrame(rows, columns=["depth", "quantity", "mean", "lo", "hi", "n"])

    def plot(self, ax: Any = None, *, entropy: bool = True, **style: Any) -> Any:
        """P(lang) per depth with 95% bands, and entropy (bits) on a second axis.

        Returns:
            The matplotlib figure (``ax.figure`` when ``ax`` is given).

        """
        from lensneurons.lens.plots import plot_latent

        return plot_latent([self], ax=ax, entropy=entropy, **style)


def latent_language(
    model: Any,
    items: Sequence[LensItem],
    *,
    languages: Sequence[str] | None = None,
    lens: LensSpec = None,
    depths: Sequence[int] | int | None = None,
    ci: str = "normal",
    batch_size: int = 32,
    label: str = "",
) -> LatentLanguageResult:
    """Wendler et al.'s latent-language measurement on a list of prompts.

    Args:
        model: a TransformerLens model with a tokenizer; runs inside any active
            ``model.hooks(...)`` context.
        items: prompts from :mod:`lensneurons.lens.prompts` (or your own :class:`LensItem`).
        languages: languages to measure (a list, or one code as a string); default
            ``("en", target)`` of the items.
        lens: the decoder, as in :func:`~lensneurons.lens.logit_lens`: ``None`` (the logit
            lens), a translator (a :class:`~lensneurons.lens.tuned.TunedLens`), or
            ``"patchscope"`` / a :class:`~lensneurons.lens.patchscope.Patchscope`.
        depths: where the lens reads, default ``1..L`` (every block's output; depth ``d`` is
            the output of block ``d - 1``, depth 0 the embeddings), as in
            :func:`~lensneurons.lens.logit_lens`.
        ci: ``"normal"`` (mean ± 1.96 s/√n) or ``"bootstrap"`` (percentile, 1000 resamples).
        batch_size: prompts per forward pass.
        label: a name for legends.

    Returns:
        A :class:`LatentLanguageResult`.

    Raises:
        NoItemsLeftError: every item was dropped by the filters.
        ParameterError: no item, an item that is not a :class:`LensItem`, ``languages=[]``
            or not strings, an unknown ``ci`` or an unknown ``lens`` name.

    >>> r = latent_language(model, prompts.translation(src="fr", tgt="de"))  # doctest: +SKIP
    >>> r.mean("en").shape  # [depth]  # doctest: +SKIP

    """
    if ci not in ("normal", "bootstrap"):
        raise ParameterError(f"ci must be 'normal' or 'bootstrap', got {ci!r}.")
    items = _check_items(items)
    if languages is None:
        targets = sorted({it.target for it in items if it.target != "en"})
        languages = ("en", *targets)
    langs = _check_languages(languages)
    tokenizer = ModelView(model).tokenizer
    kept, sets, dropped = _filter(tokenizer, items, langs)
    single = _single_token_fraction(tokenizer, items, langs)
    if not kept:
        raise NoItemsLeftError(
            f"All {len(items)} items were dropped ({dict(dropped)}): the word lists do not fit "
            "this tokenizer or the languages share Start(w) tokens. Use other words, other "
            "languages, or check the tokenizer."
        )
    token_sets = {lang: [s[lang] for s in sets] for lang in langs}
    result = logit_lens(model, [it.prompt for it in kept], positions=-1, depths=depths,
                        token_sets=token_sets, top_k=1, lens=lens, batch_size=batch_size)
    assert result.set_probs is not None
    return LatentLanguageResult(depths=result.depths, languages=langs, probs=result.set_probs,
                                entropy=result.entropy, items=kept, dropped=dict(dropped),
                                single_token_fraction=single, ci=ci, label=label,
                                fingerprint=result.fingerprint, decoder=result.decoder)


def _check_items(items: Any) -> list[LensItem]:
    if isinstance(items, (str, bytes, LensItem)) or not isinstance(items, Sequence):
        raise ParameterError(
            f"items must be a list of LensItem, got {type(items).__name__}; build them with "
            "lensneurons.lens.prompts.translation(src=..., tgt=...)."
        )
    items = list(items)
    if not items:
        raise ParameterError("items is empty: pass at least one LensItem (see lens.prompts).")
    wrong = [it for it in items if not isinstance(it, LensItem)]
    if wrong:
        raise ParameterError(
            f"items must be LensItem objects (a prompt with its answer in every language), got "
            f"{type(wrong[0]).__name__} {wrong[0]!r:.60}; build them with lensneurons.lens.prompts."
        )
    return items


def _check_languages(languages: Any) -> tuple[str, ...]:
    if isinstance(languages, str):
        languages = [languages]
    if not isinstance(languages, Sequence) or not languages or any(
            not isinstance(lang, str) or not lang for lang in languages):
        raise ParameterError(
            f"languages must be a non-empty list of language codes such as ['en', 'de'], got "
            f"{languages!r}; leave it out for English and the items' target."
        )
    return tuple(dict.fromkeys(languages))


def _filter(tokenizer: Any, items: list[LensItem],
            langs: tuple[str, ...]) -> tuple[list[LensItem], list[dict], Counter]:
    kept: list[LensItem] = []
    sets: list[dict] = []
    dropped: Counter[str] = Counter()
    for item in items:
        if any(lang not in item.words for lang in langs):
            dropped["missing_word"] += 1
            continue
        en = item.words.get("en", "")
        if item.target != "en" and en and en.lower() in item.words[item.target].lower():
            dropped["english_substring"] += 1
            continue
        try:
            row = {lang: set(start_tokens(tokenizer, item.words[lang]).ids) for lang in langs}
        except EmptyTokenSetError:
            dropped["empty_start"] += 1
            continue
        if any(row[a] & row[b] for i, a in enumerate(langs) for b in langs[i + 1:]):
            dropped["overlap"] += 1
            continue
        kept.append(item)
        sets.append({lang: sorted(ids) for lang, ids in row.items()})
    return kept, sets, dropped


def _single_token_fraction(tokenizer: Any, items: list[LensItem],
                           langs: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for lang in langs:
        words = sorted({it.words[lang] for it in items if lang in it.words})
        flags = []
        for word in words:
            try:
                flags.append(start_tokens(tokenizer, word).single_token)
            except EmptyTokenSetError:
                flags.append(False)
        out[lang] = sum(flags) / len(flags) if flags else float("nan")
    return out
