"""Bad inputs of ``collect`` and its long-run settings: checkpoints, resume (tests/_catalog.py)."""

from __future__ import annotations

import os
import uuid

import _catalog
import numpy as np
import pytest
import torch
from _catalog import Case

import lensneurons as ln
from lensneurons.errors import (
    CheckpointMismatchError,
    CorruptResultError,
    ParameterError,
    ResultExistsError,
    ResultNotFoundError,
    UnknownGroupError,
    UnknownSiteError,
    UnwritablePathError,
)
from lensneurons.subjects import real_stats

TEXTS = {"en": ["The cat sleeps on the mat.", "A dog runs."], "fr": ["Le chat dort.", "Un chien."]}


def corpus():
    return ln.Corpus.from_texts(TEXTS)


def run(c, built=None, **kwargs):
    return ln.collect(c.model, built or corpus(), progress=False, **kwargs)


def fresh(c):
    return c.tmp_path / f"ckpt-{uuid.uuid4().hex[:8]}"


def no_forward(c, built=None, **kwargs):
    """``collect`` that must fail before its first forward pass (asserted, then re-raised)."""
    passes = []
    with c.model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: passes.append(1))]):
        try:
            return run(c, built, **kwargs)
        finally:
            assert not passes, "the error came after the computation started"


def checkpointed(c, **kwargs):
    """A folder with the complete checkpoint of a run on the shared context (batch_size=2)."""
    path = fresh(c)
    run(c, checkpoint=path, batch_size=2, **kwargs)
    return path


def file_parent(c):
    """A path whose parent is a file: it can never be created (also when running as root)."""
    blocker = c.tmp_path / f"file-{uuid.uuid4().hex[:8]}"
    blocker.write_text("not a folder")
    return blocker / "ckpt"


def saved_stats(c):
    path = fresh(c)
    c.stats.save(path)
    return path


def damaged(c):
    path = checkpointed(c)
    file = path / "checkpoint.safetensors"
    file.write_bytes(file.read_bytes()[:100])
    return run(c, checkpoint=path, batch_size=2, resume=True)


def resume_complete(c):
    path = checkpointed(c)
    return path, no_forward(c, checkpoint=path, batch_size=2, resume=True)


def half_torchrun_env(c):
    """WORLD_SIZE set by hand, without the rest of torchrun's environment."""
    saved = {k: os.environ.get(k) for k in ("WORLD_SIZE", "RANK", "MASTER_ADDR")}
    os.environ.update(WORLD_SIZE="2", RANK="0")
    os.environ.pop("MASTER_ADDR", None)
    try:
        return no_forward(c)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_resumed(result, c):
    _, stats = result
    plain = run(c, batch_size=2)
    assert stats.meta["batches_per_rank"] == [0] and stats.meta["resumed_at"] == 2
    assert torch.equal(stats.active, plain.active) and torch.equal(stats.n_tokens,
                                                                   plain.n_tokens)


def check_example_documents(stats, c):
    assert stats.n_docs.tolist() == [2, 1]
    assert (stats.active_docs <= stats.n_docs[:, None, None]).all() and stats.active_docs.any()


EXAMPLES = {"en": [("Q: cat? A:", " It sleeps."), ("Q: dog? A:", " It runs.")],
            "fr": [("Q : chat ? R :", " Il dort.")]}


def check_numpy_batch(stats, c):
    plain = run(c, batch_size=3)
    assert stats.meta["batch_size"] == 3 and torch.equal(stats.active, plain.active)


CASES = [
    Case("collect-batch-size-zero", "collect(model, corpus, batch_size=0)",
         lambda c: no_forward(c, batch_size=0), ParameterError, "batch_size must be .* >= 1"),
    Case("collect-batch-size-negative", "collect(model, corpus, batch_size=-4)",
         lambda c: no_forward(c, batch_size=-4), ParameterError, "batch_size"),
    Case("collect-batch-size-float", "collect(model, corpus, batch_size=2.5)",
         lambda c: no_forward(c, batch_size=2.5), ParameterError, "batch_size must be an integer"),
    Case("collect-batch-size-string", "collect(model, corpus, batch_size='8')",
         lambda c: no_forward(c, batch_size="8"), ParameterError, "integer"),
    Case("collect-batch-size-bool", "collect(model, corpus, batch_size=True)",
         lambda c: no_forward(c, batch_size=True), ParameterError, "integer"),
    Case("collect-batch-size-numpy", "collect(model, corpus, batch_size=np.int64(3))",
         lambda c: run(c, batch_size=np.int64(3)), None, check=check_numpy_batch),
    Case("collect-max-tokens-zero", "collect(model, corpus, max_tokens_per_group=0)",
         lambda c: no_forward(c, max_tokens_per_group=0), ParameterError,
         "max_tokens_per_group must be .* >= 1"),
    Case("collect-max-tokens-negative", "collect(model, corpus, max_tokens_per_group=-5)",
         lambda c: no_forward(c, max_tokens_per_group=-5), ParameterError,
         "max_tokens_per_group"),
    Case("collect-max-tokens-float", "collect(model, corpus, max_tokens_per_group=1e6)",
         lambda c: no_forward(c, max_tokens_per_group=1e6), ParameterError, "integer"),
    Case("collect-sequence-stats-string", "collect(model, corpus, sequence_stats='yes')",
         lambda c: no_forward(c, sequence_stats="yes"), ParameterError, "True or False"),
    Case("collect-document-stats-string", "collect(model, corpus, document_stats='yes')",
         lambda c: no_forward(c, document_stats="yes"), ParameterError, "True or False"),
    Case("collect-documents-packed",
         "collect(model, Corpus.from_texts(texts, pack=True), document_stats=True)",
         lambda c: no_forward(c, ln.Corpus.from_texts(TEXTS, pack=True), document_stats=True),
         ParameterError, "pack=False"),
    Case("collect-documents-cut-into-windows",
         "collect(model, Corpus.from_texts(texts, window=8), document_stats=True)",
         lambda c: no_forward(c, ln.Corpus.from_texts(TEXTS, window=8), document_stats=True),
         ParameterError, "longer window"),
    Case("collect-documents-of-examples",
         "collect(model, Corpus.from_examples(examples), document_stats=True)",
         lambda c: run(c, ln.Corpus.from_examples(EXAMPLES), document_stats=True), None,
         check=check_example_documents),
    Case("collect-unknown-site", "collect(model, corpus, site='mlp.out')",
         lambda c: no_forward(c, site="mlp.out"), UnknownSiteError, "known sites"),
    Case("collect-checkpoint-every-zero",
         "collect(model, corpus, checkpoint='ckpt', checkpoint_every=0)",
         lambda c: no_forward(c, checkpoint=fresh(c), checkpoint_every=0), ParameterError,
         "checkpoint_every must be .* >= 1"),
    Case("collect-checkpoint-every-without-path", "collect(model, corpus, checkpoint_every=10)",
         lambda c: no_forward(c, checkpoint_every=10), ParameterError, "checkpoint="),
    Case("collect-checkpoint-not-a-path", "collect(model, corpus, checkpoint=5)",
         lambda c: no_forward(c, checkpoint=5), ParameterError, "folder path"),
    Case("collect-checkpoint-unwritable", "collect(model, corpus, checkpoint='a_file/ckpt')",
         lambda c: no_forward(c, checkpoint=file_parent(c)), UnwritablePathError,
         "Cannot create"),
    Case("collect-checkpoint-is-a-file", "collect(model, corpus, checkpoint='notes.txt')",
         lambda c: no_forward(c, checkpoint=file_parent(c).parent), UnwritablePathError,
         "is a file"),
    Case("collect-checkpoint-holds-stats", "collect(model, corpus, checkpoint='stats_folder')",
         lambda c: no_forward(c, checkpoint=saved_stats(c)), ResultExistsError,
         "folder of its own"),
    Case("collect-checkpoint-exists-no-resume",
         "collect(model, corpus, checkpoint='ckpt')  # ckpt holds an earlier run",
         lambda c: no_forward(c, checkpoint=checkpointed(c), batch_size=2), ResultExistsError,
         "resume=True"),
    Case("collect-resume-true-without-path", "collect(model, corpus, resume=True)",
         lambda c: no_forward(c, resume=True), ParameterError, "checkpoint="),
    Case("collect-resume-bad-value", "collect(model, corpus, checkpoint='ckpt', resume='yes')",
         lambda c: no_forward(c, checkpoint=fresh(c), resume=1), ParameterError,
         "resume must be False, True, 'auto'"),
    Case("collect-resume-missing", "collect(model, corpus, resume='no_such_ckpt')",
         lambda c: no_forward(c, resume=fresh(c)), ResultNotFoundError, "resume='auto'"),
    Case("collect-resume-missing-true",
         "collect(model, corpus, checkpoint='new_folder', resume=True)",
         lambda c: no_forward(c, checkpoint=fresh(c), resume=True), ResultNotFoundError,
         "no checkpoint"),
    Case("collect-resume-stats-folder", "collect(model, corpus, resume='stats_folder')",
         lambda c: no_forward(c, resume=saved_stats(c)), ResultNotFoundError,
         "no checkpoint"),
    Case("collect-resume-other-batch-size",
         "collect(model, corpus, checkpoint='ckpt', resume=True, batch_size=4)  # saved with 2",
         lambda c: no_forward(c, checkpoint=checkpointed(c), resume=True, batch_size=4),
         CheckpointMismatchError, "batch_size 2 vs 4"),
    Case("collect-resume-other-corpus",
         "collect(model, other_corpus, checkpoint='ckpt', resume=True)",
         lambda c: ln.collect(c.model, ln.Corpus.from_texts({"en": ["Other."], "fr": ["Autre."]}),
                              checkpoint=checkpointed(c), resume=True, batch_size=2,
                              progress=False),
         CheckpointMismatchError, "tokenized corpus"),
    Case("collect-resume-other-site",
         "collect(model, corpus, checkpoint='ckpt', resume=True, site='attn.q')",
         lambda c: no_forward(c, checkpoint=checkpointed(c), resume=True, batch_size=2,
                              site="attn.q"),
         CheckpointMismatchError, "site 'mlp' vs 'attn.q'"),
    Case("collect-resume-adds-document-stats",
         "collect(model, corpus, checkpoint='ckpt', resume=True, document_stats=True)"
         "  # saved without",
         lambda c: no_forward(c, checkpoint=checkpointed(c), resume=True, batch_size=2,
                              document_stats=True),
         CheckpointMismatchError, "document_stats False vs True"),
    Case("collect-resume-damaged", "collect(model, corpus, checkpoint='ckpt', resume=True)"
         "  # checkpoint.safetensors truncated", damaged, CorruptResultError, "save it again"),
    Case("collect-resume-complete",
         "collect(model, corpus, checkpoint='ckpt', resume=True)  # the run had finished",
         resume_complete, None, check=check_resumed),
    Case("collect-distributed-not-launched", "collect(model, corpus, distributed=True)",
         lambda c: no_forward(c, distributed=True), ParameterError, "torchrun"),
    Case("collect-world-size-without-torchrun", "WORLD_SIZE=2 python script.py  # no torchrun",
         half_torchrun_env, ParameterError, "distributed=False"),
    Case("collect-heldout-of-other-stats", "real_stats.heldout(collect(organism, corpus))",
         lambda c: real_stats.heldout(c.stats), ParameterError,
         "not collected on that corpus.*Pass real_stats.load\\(name\\)"),
    Case("collect-heldout-unknown-language",
         "real_stats.heldout(real_stats.load('gemma-3-270m'), ['xx'])",
         lambda c: real_stats.heldout(real_stats.load("gemma-3-270m"), ["xx"]),
         UnknownGroupError, "Pass languages= among those"),
    Case("collect-distributed-string", "collect(model, corpus, distributed='yes')",
         lambda c: no_forward(c, distributed="yes"), ParameterError, "None, True or False"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
