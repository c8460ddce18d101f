"""Start(w) token sets: the tokens with which a model could begin writing the word ``w``.

Wendler et al. (2024) measure P(language) as the summed next-token probability of Start(w), the
vocabulary entries that are a prefix of ``w`` (with or without a leading space). Their code looked
prefixes up in ``tokenizer.get_vocab()``, which fails for byte-level BPE vocabularies (non-ASCII
strings are stored byte-encoded, ``Ġ`` for a space). Here every id is *decoded* once per tokenizer
and matched on the decoded string (and on the SentencePiece form with ``▁`` read as a space), plus:

- the first token of ``encode(w)`` and ``encode(" " + w)``;
- the byte-fallback token of the first UTF-8 byte (``<0xE8>`` in SentencePiece, the byte-level
  character in GPT-2-style BPE), with and without a leading space, for non-ASCII words.

Examples:
    >>> from lensneurons.lens import start_tokens
    >>> ts = start_tokens(model.tokenizer, "chat")  # doctest: +SKIP
    >>> ts.strings  # doctest: +SKIP
    ['c', 'ch', ' c', ' ch', ' chat']

"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lensneurons.errors import EmptyTokenSetError, InvalidTextError, VocabularyUnavailableError


@dataclass(frozen=True)
class TokenSet:
    """The Start(w) set of one word.

    Attributes:
        word: the word.
        ids: token ids, sorted.
        strings: their decoded strings (for reading and debugging).
        single_token: whether ``w`` or ``" " + w`` is one token of the vocabulary.

    """

    word: str
    ids: tuple[int, ...]
    strings: tuple[str, ...]
    single_token: bool

    def __len__(self) -> int:
        return len(self.ids)

    def __and__(self, other: TokenSet) -> set[int]:
        return set(self.ids) & set(other.ids)


class VocabIndex:
    """Decoded vocabulary of a tokenizer: string -> ids, built once (cached per tokenizer).

    Args:
        tokenizer: a Hugging Face tokenizer (slow or fast).

    Raises:
        VocabularyUnavailableError: the tokenizer cannot list or decode its vocabulary.

    """

    def __init__(self, tokenizer: Any) -> None:
        get_vocab = getattr(tokenizer, "get_vocab", None)
        try:
            vocab = get_vocab() if callable(get_vocab) else None
        except (NotImplementedError, AttributeError, TypeError):
            vocab = None
        if not vocab or not hasattr(tokenizer, "decode"):
            raise VocabularyUnavailableError(
                f"{type(tokenizer).__name__} cannot list its vocabulary (get_vocab()) or decode "
                "ids, so Start(w) sets cannot be built. Use a Hugging Face tokenizer, or pass "
                "token ids yourself through logit_lens(token_sets=...)."
            )
        self.tokenizer = tokenizer
        self.raw: dict[str, int] = dict(vocab)
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        self.special = special
        self.by_string: dict[str, set[int]] = {}
        for raw, i in vocab.items():
            if i in special:
                continue
            forms = {tokenizer.decode([i]), raw.replace("▁", " ")}
            for form in forms:
                if form and "\ufffd" not in form:
                    self.by_string.setdefault(form, set()).add(i)
        self._byte_chars = _bytes_to_unicode()

    def lookup(self, text: str) -> set[int]:
        """Ids whose decoded string is exactly ``text``."""
        return self.by_string.get(text, set())

    def first_byte_ids(self, word: str) -> set[int]:
        """Byte-fallback tokens of the first UTF-8 byte of ``word`` (empty for ASCII words)."""
        data = word.encode("utf-8")
        if not data or data[0] < 0x80:
            return set()
        b = data[0]
        names = [f"<0x{b:02X}>", self._byte_chars[b], "Ġ" + self._byte_chars[b],
                 "▁" + self._byte_chars[b]]
        return {self.raw[n] for n in names if n in self.raw}

    def encode_first(self, text: str) -> set[int]:
        """Return the first non-special token of ``text`` as the tokenizer encodes it."""
        try:
            ids = self.tokenizer.encode(text, add_special_tokens=False)
        except TypeError:
            ids = self.tokenizer.encode(text)
        ids = [i for i in ids if i not in self.special]
        return {int(ids[0])} if ids else set()


_INDEXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def vocab_index(tokenizer: Any) -> VocabIndex:
    """Return the (cached) :class:`VocabIndex` of ``tokenizer``."""
    try:
        index = _INDEXES.get(tokenizer)
    except TypeError:
        return VocabIndex(tokenizer)
    if index is None:
        index = VocabIndex(tokenizer)
        _INDEXES[tokenizer] = index
    return index


def start_tokens(tokenizer: Any, word: str, *, leading_space: bool = True,
                 first_byte: bool = True) -> TokenSet:
    """Start(w): ids of tokens that begin ``word`` (decoded prefixes, encodings, first byte).

    Args:
        tokenizer: a Hugging Face tokenizer.
        word: the word, without quotes or surrounding spaces.
        leading_space: also accept prefixes of ``" " + word``.
        first_byte: add byte-fallback tokens of the first UTF-8 byte (non-ASCII words).

    Returns:
        A :class:`TokenSet`.

    Raises:
        EmptyTokenSetError: no token begins the word (an empty word, or one the tokenizer
            only knows as ``<unk>``).
        InvalidTextError: ``word`` is not a string.
        VocabularyUnavailableError: the tokenizer cannot list its vocabulary.

    >>> start_tokens(tok, "Hund").ids  # doctest: +SKIP
    (57, 212)

    """
    if not isinstance(word, str):
        raise InvalidTextError(f"word must be a string, got {type(word).__name__} {word!r}.")
    word = word.strip()
    if not word:
        raise EmptyTokenSetError("Start(w) of an empty word is empty; remove the item.")
    index = vocab_index(tokenizer)
    variants = [word] + ([" " + word] if leading_space else [])
    ids: set[int] = set()
    for variant in variants:
        for k in range(1, len(variant) + 1):
            prefix = variant[:k]
            if prefix.strip():
                ids |= index.lookup(prefix)
        ids |= index.encode_first(variant)
    if first_byte:
        ids |= index.first_byte_ids(word)
    unk = getattr(tokenizer, "unk_token_id", None)
    ids.discard(unk) if unk is not None else None
    ids -= index.special
    ids = {i for i in ids if tokenizer.decode([i]).strip() or i in index.first_byte_ids(word)}
    if not ids:
        raise EmptyTokenSetError(
            f"No token of this tokenizer begins {word!r} (Start(w) is empty). Check the spelling "
            "and the language of the word list, or drop the word."
        )
    single = any(index.lookup(v) for v in variants)
    ordered = tuple(sorted(ids))
    return TokenSet(word=word, ids=ordered, strings=tuple(tokenizer.decode([i]) for i in ordered),
                    single_token=single)


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (byte-level BPE vocabularies)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, [chr(c) for c in chars], strict=True))
