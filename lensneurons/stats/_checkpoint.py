"""Checkpoints of :func:`lensneurons.collect`: totals plus the corpus position, saved atomically.

A checkpoint is a ``checkpoint`` result of :mod:`lensneurons.core.persistence` (one folder,
written through a temporary folder and a rename, so a ``kill -9`` at any moment leaves the
previous checkpoint or the new one). It holds the totals of the batches ``[0, batches_done)``
of the deterministic batch list, and the identity of the run: the model's fingerprint and
dtype, a digest of the tokenized corpus (texts, tokenizer, window, token cap and order), the
site and the settings. Resuming
against anything else raises :class:`~lensneurons.errors.CheckpointMismatchError` naming what
differs.

Examples:
    >>> plan = Plan.resolve("runs/ckpt", None, False)
    >>> plan.write, plan.every, plan.read
    (PosixPath('runs/ckpt'), 100, None)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lensneurons.core import checks as _checks
from lensneurons.core.model import ModelView
from lensneurons.core.persistence import KINDS, check_writable, load_result, save_result
from lensneurons.core.sites import Site
from lensneurons.corpora.corpus import TokenizedCorpus
from lensneurons.errors import (
    CheckpointMismatchError,
    CorruptResultError,
    ParameterError,
    ResultExistsError,
    ResultNotFoundError,
)

#: Version of what a checkpoint holds (on top of the ``_io`` format version).
CHECKPOINT_FORMAT = 1
#: Batches between checkpoints when ``checkpoint=`` is given without ``checkpoint_every``.
DEFAULT_EVERY = 100
_SETTINGS = ("site", "batch_size", "max_tokens_per_group", "sequence_stats", "document_stats",
             "value_stats", "groups", "n_batches")
#: Settings added after checkpoint format 1, and their value in checkpoints written before.
_ADDED = {"document_stats": False, "value_stats": True}


@dataclass(frozen=True)
class Plan:
    """Where a run reads its starting point and writes its checkpoints.

    Attributes:
        write: the checkpoint folder written every ``every`` batches (``None``: no checkpoints).
        every: batches between checkpoints.
        read: the checkpoint to resume from (``None``: start at batch 0).
        required: ``read`` must exist (``resume=True`` or a path; not ``"auto"``).
    """

    write: Path | None
    every: int
    read: Path | None
    required: bool

    @classmethod
    def resolve(cls, checkpoint: Any, checkpoint_every: Any, resume: Any) -> Plan:
        """Check the three arguments of :func:`lensneurons.collect` and combine them.

        Raises:
            ParameterError: an argument has the wrong type or range, or they do not fit
                together (``checkpoint_every`` or ``resume=True`` without a checkpoint path).
        """
        if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
            raise ParameterError(
                f"checkpoint must be a folder path, got {type(checkpoint).__name__}.")
        write = Path(checkpoint) if checkpoint is not None else None
        if resume is True or resume == "auto":
            if write is None:
                raise ParameterError(
                    f"resume={resume!r} continues the checkpoint at checkpoint=path, but no "
                    "checkpoint path was given. Pass checkpoint='runs/ckpt' (the folder of the "
                    "interrupted run), or resume='runs/ckpt'.")
            read, required = write, resume is True
        elif resume is False or resume is None:
            read, required = None, False
        elif isinstance(resume, (str, os.PathLike)):
            read, required = Path(resume), True
            write = write if write is not None else read
        else:
            raise ParameterError(
                f"resume must be False, True, 'auto' or a checkpoint folder, got {resume!r}.")
        if checkpoint_every is not None and write is None:
            raise ParameterError(
                "checkpoint_every needs a folder to write checkpoints into: pass "
                "checkpoint='runs/ckpt' as well.")
        every = DEFAULT_EVERY if checkpoint_every is None else _checks.positive_int(
            checkpoint_every, "checkpoint_every")
        return cls(write, every, read, required)

    def check(self) -> None:
        """Before any computation: the checkpoint folder can be written, the resume point exists.

        Raises:
            ResultNotFoundError: ``resume`` names a folder without a checkpoint.
            ResultExistsError: ``checkpoint`` holds another result, or a checkpoint while
                ``resume`` is false (continue it with ``resume=True``, or start elsewhere).
            UnwritablePathError: the checkpoint folder cannot be written.
        """
        if self.read is not None and self.required and find(self.read) is None:
            raise ResultNotFoundError(
                f"There is no checkpoint to resume in {self.read}. Check the path, or pass "
                "resume='auto' to start a new run when none exists (resume=False starts over).")
        if self.write is None:
            return
        kind = _kind_of(self.write)
        if kind not in (None, "checkpoint"):
            raise ResultExistsError(
                f"{self.write} holds a {kind} result, not a checkpoint; give checkpoint= a "
                "folder of its own.")
        if kind == "checkpoint" and self.read is None:
            raise ResultExistsError(
                f"{self.write} holds the checkpoint of an earlier run. Pass resume=True to "
                "continue it, or delete the folder (or choose another) to start over.")
        check_writable(self.write, overwrite=True)


def _kind_of(folder: Path) -> str | None:
    """The kind of the result in ``folder`` (``None``: no such folder, or an empty one)."""
    if not folder.is_dir():
        return None
    for kind in KINDS:
        if (folder / f"{kind}.json").exists():
            return kind
    return "unknown" if any(folder.iterdir()) else None


def find(folder: Path) -> Path | None:
    """The folder holding the checkpoint of ``folder``, or ``None``.

    A kill between the two renames of an atomic save leaves the previous checkpoint as
    ``.<name>.old-<token>`` next to the missing folder: that complete checkpoint is used.
    """
    if (folder / "checkpoint.json").exists():
        return folder
    if folder.exists():
        return None
    olds = [p for p in folder.parent.glob(f".{folder.name}.old-*")
            if (p / "checkpoint.json").exists()]
    return max(olds, key=lambda p: p.stat().st_mtime) if olds else None


def digest(tokenized: TokenizedCorpus) -> str:
    """A sha256 of the token sequences (group, ids and counted flags, in order) and groups."""
    h = hashlib.sha256(json.dumps([tokenized.groups, tokenized.pad_id]).encode())
    for seq in tokenized.sequences:
        h.update(seq.group.to_bytes(4, "little") + len(seq.tokens).to_bytes(8, "little"))
        h.update(seq.tokens.numpy().tobytes())
        h.update(seq.counted.numpy().tobytes())
    return h.hexdigest()


def identity(view: ModelView, where: Site, tokenized: TokenizedCorpus,
             **settings: Any) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed (JSON-able; settings by name).

    The fingerprint is the model's and the site's (``where``: an SAE site's weights), so a
    resume with other SAE weights under the same site name is refused like one on another model.
    """
    return {"checkpoint_format": CHECKPOINT_FORMAT,
            "fingerprint": {**view.fingerprint(), **where.identity()},
            "dtype": str(view.model.W_E.dtype).removeprefix("torch."),
            "corpus_digest": digest(tokenized), **settings}


def differences(saved: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """How ``saved`` (a checkpoint's identity) differs from this run's, one line per item."""
    out = []
    if saved.get("checkpoint_format") != mine["checkpoint_format"]:
        out.append(f"checkpoint format {saved.get('checkpoint_format')!r}, this lensneurons "
                   f"writes {mine['checkpoint_format']}")
    theirs, ours = saved.get("fingerprint") or {}, mine["fingerprint"]
    # A checkpoint written before SAE digests were recorded has none to compare.
    sizes = [k for k in ours if k != "embedding_slice" and theirs.get(k) != ours[k]
             and not (k == "sae" and "sae" not in theirs)]
    if sizes:
        out.append("the model: " + ", ".join(f"{k} {theirs.get(k)!r} vs {ours[k]!r}"
                                              for k in sizes))
    elif theirs.get("embedding_slice") != ours["embedding_slice"]:
        out.append("the model's weights (same architecture and sizes, other values)")
    if saved.get("dtype") != mine["dtype"]:
        out.append(f"the model's dtype {saved.get('dtype')} vs {mine['dtype']}")
    if saved.get("corpus_digest") != mine["corpus_digest"]:
        out.append("the tokenized corpus (other texts, order, tokenizer, window or token cap)")
    for key in _SETTINGS:
        theirs = saved.get(key, _ADDED.get(key))
        if key in mine and theirs != mine[key]:
            out.append(f"{key} {theirs!r} vs {mine[key]!r}")
    return out


def load(folder: Path, mine: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor],
                                                      int]:
    """The totals, per-group sequence means and ``batches_done`` of the checkpoint in ``folder``.

    Raises:
        ResultNotFoundError: no checkpoint there.
        CheckpointMismatchError: it was written by a run on another model, corpus, site or
            settings (the message lists each difference).
        CorruptResultError: its files are damaged or disagree with its record.
    """
    found = find(folder)
    if found is None:
        raise ResultNotFoundError(f"There is no checkpoint to resume in {folder}.")
    tensors, meta = load_result(found, "checkpoint")
    diff = differences(meta.get("identity") or {}, mine)
    if diff:
        raise CheckpointMismatchError(
            f"The checkpoint in {folder} was written by another run; it differs in: "
            + "; ".join(diff) + ". Resume with the same model, corpus and settings, or start a "
            "new run in another folder (or with resume=False after deleting it).")
    done, n_batches = meta.get("batches_done"), mine["n_batches"]
    if not isinstance(done, int) or not 0 <= done <= n_batches:
        raise CorruptResultError(
            f"The checkpoint in {folder} records batches_done={done!r} of {n_batches}; it is "
            "damaged. Delete it and start over.")
    means = [tensors.pop(f"seq_means.{g}") for g in range(len(mine["groups"]))
             if f"seq_means.{g}" in tensors]
    return tensors, means, done


def save(folder: Path, state: dict[str, torch.Tensor], means: list[torch.Tensor] | None,
         mine: dict[str, Any], done: int) -> None:
    """Write the checkpoint of the batches ``[0, done)`` atomically, replacing the previous one."""
    tensors = dict(state)
    for g, group_means in enumerate(means or []):
        tensors[f"seq_means.{g}"] = group_means
    save_result(folder, "checkpoint", tensors,
                {"identity": mine, "batches_done": done, "n_batches": mine["n_batches"]},
                overwrite=True)
    # Saves killed earlier leave their temporary folders; the new checkpoint supersedes them.
    for stale in [*folder.parent.glob(f".{folder.name}.old-*"),
                  *folder.parent.glob(f".{folder.name}.partial-*")]:
        shutil.rmtree(stale, ignore_errors=True)
