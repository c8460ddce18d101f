"""Per-document statistics (``collect(..., document_stats=True)``): exact, kept across runs."""

import pytest
import torch

import lensneurons as ln
from lensneurons.core.sites import get_site
from lensneurons.corpora.corpus import TokenizedCorpus
from lensneurons.errors import CollectInterrupted
from lensneurons.stats import _checkpoint

BATCH = 3


def brute_documents(model, corpus, site_name):
    """Per group: documents with each unit active on a counted token, and documents, by cache."""
    site = ln.get_site(model, site_name)
    tokenized = corpus.tokenize(model)
    n_groups = len(corpus.groups)
    docs = torch.zeros(n_groups, site.n_layers, site.width, dtype=torch.int64)
    n_docs = torch.zeros(n_groups, dtype=torch.int64)
    for seq in tokenized.sequences:  # one text each: nothing here is longer than the window
        _, cache = model.run_with_cache(seq.tokens[None])
        for layer in range(site.n_layers):
            name = site.read_hook(layer)
            units = site.units(cache[name], name)[0][seq.counted]
            docs[seq.group, layer] += (units > 0).any(0)
        n_docs[seq.group] += 1
    return docs, n_docs


@pytest.fixture(scope="module")
def documented(organism, corpus):
    return ln.collect(organism, corpus, batch_size=BATCH, document_stats=True, progress=False)


def test_document_counts_equal_brute_force(organism, corpus, documented):
    docs, n_docs = brute_documents(organism, corpus, "mlp")
    assert documented.n_docs.tolist() == [8] * 7 == n_docs.tolist()
    assert torch.equal(documented.active_docs, docs)
    # not trivial: some units fire in some documents of a group and not in the others
    partly = (docs > 0) & (docs < n_docs[:, None, None])
    assert partly.any() and (docs == 0).any()
    assert torch.equal(documented.active_docs > 0, documented.active > 0)


def test_document_counts_of_sae_latents(organism, corpus):
    site = ln.sae_site(ln.SAE.load(ln.sae.ORGANISM_SAE))
    stats = ln.collect(organism, corpus, site=site, batch_size=5, document_stats=True,
                       progress=False)
    docs, n_docs = brute_documents(organism, corpus, site)
    assert torch.equal(stats.active_docs, docs) and torch.equal(stats.n_docs, n_docs)
    assert ((docs > 0) & (docs < 8)).any()


def test_batch_size_and_other_statistics_do_not_change(organism, corpus, documented):
    one = ln.collect(organism, corpus, batch_size=1, document_stats=True, sequence_stats=True,
                     progress=False)
    assert torch.equal(one.active_docs, documented.active_docs)
    assert torch.equal(one.n_docs, one.n_sequences)
    assert torch.equal(one.active, documented.active)
    plain = ln.collect(organism, corpus, batch_size=BATCH, progress=False)
    assert plain.active_docs is None and plain.n_docs is None
    assert torch.equal(plain.active, documented.active)


def test_examples_are_documents(organism):
    corpus = ln.Corpus.from_examples({"en": [("Q: cat? A:", " The cat sleeps.")] * 3,
                                      "fr": [("Q: chat ? R :", " Le chat dort.")] * 2})
    stats = ln.collect(organism, corpus, document_stats=True, progress=False)
    assert stats.n_docs.tolist() == [3, 2]
    assert set(stats.active_docs[0].unique().tolist()) <= {0, 3}  # three equal documents


def test_saved_merged_and_selected(tmp_path, documented):
    documented.save(tmp_path / "stats")
    loaded = ln.ActivationStats.load(tmp_path / "stats")
    assert torch.equal(loaded.active_docs, documented.active_docs)
    assert torch.equal(loaded.n_docs, documented.n_docs)
    first, rest = documented.select(["en", "fr"]), documented.select(["de"])
    merged = first + rest
    assert merged.groups == ["en", "fr", "de"]
    assert torch.equal(merged.active_docs, documented.select(["en", "fr", "de"]).active_docs)
    doubled = first + first
    assert torch.equal(doubled.n_docs, 2 * first.n_docs)
    bare = ln.ActivationStats(groups=["en"], n_tokens=first.n_tokens[:1], active=first.active[:1])
    assert (first + bare).active_docs is None  # a shard without document counts: none merged
    torch.testing.assert_close(documented.doc_probs(),
                               documented.active_docs / documented.n_docs[:, None, None].double())


def test_from_counts_takes_document_counts():
    stats = ln.ActivationStats.from_counts(
        {"en": [[3, 0]], "fr": [[1, 2]]}, {"en": 4, "fr": 2},
        doc_counts={"fr": [[1, 1]], "en": [[2, 0]]}, n_docs={"en": 2, "fr": 1})
    assert stats.active_docs.tolist() == [[[2, 0]], [[1, 1]]]
    assert stats.n_docs.tolist() == [2, 1]
    assert stats.doc_probs()[1].tolist() == [[1.0, 1.0]]


def _interrupt_at(model, k):
    calls = []

    def hook(x, *, hook):
        calls.append(1)
        if len(calls) == k:
            raise KeyboardInterrupt

    return model.hooks(fwd_hooks=[("blocks.1.mlp.hook_pre", hook)])


def test_ctrl_c_and_resume_keep_the_document_counts(tmp_path, organism, corpus, documented,
                                                    monkeypatch):
    ckpt = tmp_path / "ckpt"
    with pytest.raises(CollectInterrupted) as info, _interrupt_at(organism, 4):
        ln.collect(organism, corpus, batch_size=BATCH, document_stats=True, checkpoint=ckpt,
                   checkpoint_every=2, progress=False)
    partial = info.value.partial
    real = TokenizedCorpus.batches
    with monkeypatch.context() as patch:
        patch.setattr(TokenizedCorpus, "batches", lambda self, size=8, skip=0: (
            b for i, b in enumerate(real(self, size, skip=skip)) if i < 3))
        prefix = ln.collect(organism, corpus, batch_size=BATCH, document_stats=True,
                            progress=False)
    assert partial.groups == prefix.groups
    assert torch.equal(partial.active_docs, prefix.active_docs)
    assert torch.equal(partial.n_docs, prefix.n_docs) and int(partial.n_docs.sum()) == 9
    resumed = ln.collect(organism, corpus, batch_size=BATCH, document_stats=True,
                         checkpoint=ckpt, resume=True, progress=False)
    assert resumed.meta["resumed_at"] == 3
    assert torch.equal(resumed.active_docs, documented.active_docs)
    assert torch.equal(resumed.n_docs, documented.n_docs)


def test_checkpoints_written_before_document_stats_still_resume(organism, corpus):
    view = ln.ModelView(organism)
    mine = _checkpoint.identity(view, get_site(view, "mlp"), corpus.tokenize(organism),
                                site="mlp", document_stats=False)
    older = {k: v for k, v in mine.items() if k != "document_stats"}
    assert _checkpoint.differences(older, mine) == []
    assert _checkpoint.differences(older, {**mine, "document_stats": True}) == [
        "document_stats False vs True"]
