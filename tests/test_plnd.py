"""PLND (detect/plnd.py): scores equal brute-force ablations; planted units are recovered."""

from __future__ import annotations

import copy
import functools
import warnings

import _models
import pytest
import torch

import lensneurons as ln
from lensneurons.corpora.corpus import TokenizedCorpus
from lensneurons.detect.plnd import DOC_FREQUENCY, PAPER_DOC_FREQUENCY, document_scores
from lensneurons.errors import EmptySetWarning

#: A gated Llama-style model and a grouped-query one in each TL environment.
BRUTE_ARCHS = [a for a in ("llama", "mistral", "ht_llama") if a in _models.ARCHS]
TEXT = "Le chat dort sur le tapis chaud, et le chien aussi."
#: Shorter than d_head (16): Q/K scores take the Gram-matrix route instead of the direct one.
SHORT = "Le chat dort."


@functools.cache
def model64(arch: str):
    """The tiny model of ``arch`` in float64 (a copy: the shared fp32 model is left alone)."""
    if arch.startswith("ht_"):
        model = copy.deepcopy(_models.build(arch))
        model.cfg.dtype = torch.float64
        return model.to(torch.float64)
    from transformer_lens.model_bridge import TransformerBridge

    hf = copy.deepcopy(_models.hf_model(arch)).to(torch.float64)
    return TransformerBridge.boot_transformers(
        f"local-{arch}-64", hf_model=hf, tokenizer=_models.tokenizer(), device="cpu",
        dtype=torch.float64).eval()


def one_document(model, text=TEXT):
    corpus = ln.Corpus.from_texts({"fr": [text]})
    batch = next(corpus.tokenize(model).batches(1))
    return corpus, batch.tokens, batch.counted[0]


def changed(model, tokens, counted, edit_hook, edit, read_hook, heads=None):
    """Norm over counted positions of the change at ``read_hook`` when ``edit`` runs."""
    store = {}

    def grab(x, hook):
        store["x"] = x.detach().clone()

    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(read_hook, grab)])
        base = store["x"]
        model.run_with_hooks(tokens, fwd_hooks=[(edit_hook, edit), (read_hook, grab)])
    diff = (store["x"] - base)[0][counted]
    if heads is not None:
        diff = diff[:, heads]
    return float(diff.norm())


def zero(*index):
    def hook(x, hook):
        x = x.clone()
        x[(slice(None), slice(None), *index)] = 0
        return x
    return hook


UNITS = (0, 5, 11, 17, 30)  # a sample of units (brute force runs two passes per unit)


@pytest.mark.parametrize("arch", BRUTE_ARCHS)
def test_ffn_scores_equal_brute_force_ablation(arch):
    model = model64(arch)
    corpus, tokens, counted = one_document(model)
    scores, _ = document_scores(model, corpus, sites=("mlp",))
    for layer in range(model.cfg.n_layers):
        for k in UNITS:
            brute = changed(model, tokens, counted, f"blocks.{layer}.mlp.hook_post", zero(k),
                            f"blocks.{layer}.hook_mlp_out")
            assert scores["mlp"][0, layer, k].item() == pytest.approx(brute, rel=1e-5)


@pytest.mark.parametrize("arch", BRUTE_ARCHS)
def test_v_scores_equal_brute_force_on_per_head_outputs(arch):
    model = model64(arch)
    view = ln.ModelView(model)
    corpus, tokens, counted = one_document(model)
    scores, _ = document_scores(model, corpus, sites=("attn.v",))
    for layer in range(view.n_layers):
        for unit in UNITS:
            g, j = divmod(unit, view.d_head)
            brute = changed(model, tokens, counted, f"blocks.{layer}.attn.hook_v", zero(g, j),
                            f"blocks.{layer}.attn.hook_z")  # every head sharing kv head g
            assert scores["attn.v"][0, layer, unit].item() == pytest.approx(brute, rel=1e-5)


@pytest.mark.parametrize("text", [TEXT, SHORT], ids=["direct", "gram"])
@pytest.mark.parametrize("arch", BRUTE_ARCHS)
def test_qk_scores_equal_brute_force_removal_from_the_scores(arch, text):
    model = model64(arch)
    view = ln.ModelView(model)
    n_rep = view.n_heads // view.n_kv_heads
    corpus, tokens, counted = one_document(model, text)
    assert (tokens.shape[1] < view.d_head) == (text == SHORT)
    scores, _ = document_scores(model, corpus, sites=("attn.q", "attn.k"))
    for layer in range(view.n_layers):
        z = f"blocks.{layer}.attn.hook_z"
        for unit in UNITS + (view.n_heads * view.d_head - 1,):
            h, j = divmod(unit, view.d_head)
            # Zeroing q[:, h, j] where the scores are formed removes q_j k_j^T from them.
            brute = changed(model, tokens, counted, f"blocks.{layer}.attn.hook_rot_q",
                            zero(h, j), z, heads=h)
            assert scores["attn.q"][0, layer, unit].item() == pytest.approx(brute, rel=1e-5)
        for unit in UNITS:
            g, j = divmod(unit, view.d_head)
            heads = list(range(g * n_rep, (g + 1) * n_rep))
            brute = changed(model, tokens, counted, f"blocks.{layer}.attn.hook_rot_k",
                            zero(g, j), z, heads=heads)
            assert scores["attn.k"][0, layer, unit].item() == pytest.approx(brute, rel=1e-5)


def test_reference_code_scores(llama_model):
    view = ln.ModelView(llama_model)
    corpus, tokens, counted = one_document(llama_model)
    scores, _ = document_scores(llama_model, corpus, variant="reference-code")
    _, cache = llama_model.run_with_cache(tokens)
    layer = 1
    up = cache[f"blocks.{layer}.mlp.hook_pre_linear"][0][counted]
    torch.testing.assert_close(scores["mlp"][0, layer], up.abs().sum(0), rtol=1e-5, atol=1e-6)
    z = cache[f"blocks.{layer}.attn.hook_z"][0][counted]          # [t, head, d]
    n_rep = view.n_heads // view.n_kv_heads
    v_ref = z.abs().sum(0).reshape(view.n_kv_heads, n_rep, view.d_head).sum(1).flatten()
    torch.testing.assert_close(scores["attn.v"][0, layer], v_ref, rtol=1e-5, atol=1e-6)
    # Q: summed squared change of the pattern under the unscaled term (released code).
    q, k = (cache[f"blocks.{layer}.attn.hook_rot_{x}"][0] for x in "qk")
    s = cache[f"blocks.{layer}.attn.hook_attn_scores"][0]
    s = s.masked_fill(s < -1e30, float("-inf"))
    h, j = 1, 3
    kk = k[:, h // n_rep, j]
    new = (s[h] - q[:, h, j, None] * kk[None]).softmax(-1)
    expected = ((new - s[h].softmax(-1)) ** 2).sum(-1)[counted].sum()
    assert scores["attn.q"][0, layer, h * view.d_head + j].item() == pytest.approx(
        expected.item(), rel=1e-4)


def plant(model, corpus_groups):
    """Hooks making unit 7 of the MLP and value dim 3 of the last layer fire on group "ru"."""
    view = ln.ModelView(model)
    tok = model.tokenizer
    en = {t for s in corpus_groups["en"] for t in tok(s, add_special_tokens=False)["input_ids"]}
    ru = {t for s in corpus_groups["ru"] for t in tok(s, add_special_tokens=False)["input_ids"]}
    marker = torch.tensor(sorted(ru - en))
    state = {}
    w_e = model.W_E.detach()

    def find(x, hook):  # residual before block 0 is the embedding on a rotary model
        state["mask"] = (torch.cdist(x, w_e[marker][None]) < 1e-4).any(-1).to(x.dtype)

    def mlp(x, hook):
        x = x.clone()
        x[..., 7] += 1000 * state["mask"]
        return x

    def value(x, hook):
        x = x.clone()
        x[..., 0, 3] += 1000 * state["mask"]
        return x

    last = view.n_layers - 1
    return [("blocks.0.hook_resid_pre", find), (f"blocks.{last}.mlp.hook_post", mlp),
            (f"blocks.{last}.attn.hook_v", value)]


@pytest.mark.filterwarnings("ignore::lensneurons.errors.EmptySetWarning")  # en, attn.v: random
def test_planted_units_are_recovered(llama_model):
    texts = {g: [f"{s} {i}" for s in _models.SENTENCES[g] for i in range(3)] for g in ("en", "ru")}
    corpus = ln.Corpus.from_texts(texts)
    with llama_model.hooks(fwd_hooks=plant(llama_model, texts)):
        result = ln.plnd(llama_model, corpus, sites=("mlp", "attn.v"), top_rate=0.02,
                         progress=False)
    last = llama_model.cfg.n_layers - 1
    freq = result.frequency("mlp")
    assert freq[1, last, 7] == 1.0 and freq[0, last, 7] < 1.0
    assert bool(result.neuron_sets("mlp")["ru"].mask[last, 7])
    assert not result.neuron_sets("mlp")["en"].mask[last, 7]
    assert bool(result.neuron_sets("attn.v")["ru"].mask[last, 3])
    assert result.frequency("attn.v")[1, last, 3] == 1.0


def test_result_sets_files_and_hooks(organism, tmp_path):
    texts = {g: lines[:3] for g, lines in ln.organism.texts("heldout").items() if g in (
        "en", "fr", "ru")}
    result = ln.plnd(organism, ln.Corpus.from_texts(texts), progress=False)
    assert result.n_docs.tolist() == [3, 3, 3]
    assert set(result.counts) == {"mlp", "attn.q", "attn.k", "attn.v"}
    freq = result.frequency("mlp")
    assert freq.shape == (3, 4, 2048) and 0 <= freq.min() and freq.max() <= 1
    # each document activates exactly round(fraction * width) units per layer
    expected = 3 * round(2000 / 14336 * 2048)
    assert result.counts["mlp"].sum((0, 2)).tolist() == [3 * expected] * 4
    active = result.activated("mlp", 2 / 3)
    strict = result.neuron_sets("mlp", 2 / 3, exclude="any")
    loose = result.neuron_sets("mlp", 2 / 3)
    for g in result.groups:
        assert not (strict[g].mask & ~loose[g].mask).any()
        assert not (loose[g].mask & ~active[g].mask).any()
        assert len(loose[g]) > 0
    shared = torch.stack([active[g].mask for g in result.groups]).all(0)
    assert not (loose["fr"].mask & shared).any()
    for site in result.sites:
        sets = result.neuron_sets(site, 2 / 3)
        hooks = ln.deactivate(sets["fr"], model=organism)
        with organism.hooks(fwd_hooks=hooks):
            organism(organism.to_tokens("Le chat dort."))
    table = result.table(2 / 3)
    assert list(table.columns) == result.sites and list(table.index) == result.groups
    result.save(tmp_path / "plnd")
    again = ln.PLNDResult.load(tmp_path / "plnd", model=organism)
    assert again.groups == result.groups and again.meta["variant"] == "paper"
    for site in result.sites:
        assert torch.equal(again.counts[site], result.counts[site])
    assert "PLNDResult(paper" in repr(again)


def test_batching_does_not_change_counts(organism):
    texts = {g: lines[:4] for g, lines in ln.organism.texts("heldout").items() if g in (
        "en", "de")}
    corpus = ln.Corpus.from_texts(texts)
    one = ln.plnd(organism, corpus, sites=("mlp", "attn.q"), batch_size=1, progress=False)
    many = ln.plnd(organism, corpus, sites=("mlp", "attn.q"), batch_size=8, progress=False)
    for site in one.sites:
        torch.testing.assert_close(one.frequency(site), many.frequency(site))


def _stop_in_pass(model, k):
    """A hook raising KeyboardInterrupt in the ``k``-th forward pass (block 1, mid-pass)."""
    calls = []

    def hook(x, *, hook):
        calls.append(1)
        if len(calls) == k:
            raise KeyboardInterrupt

    return model.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", hook)])


@pytest.mark.parametrize("k", [1, 4])
def test_ctrl_c_keeps_the_finished_documents(organism, monkeypatch, k):
    texts = {g: lines[:5] for g, lines in ln.organism.texts("heldout").items() if g in (
        "en", "fr", "ru")}
    corpus = ln.Corpus.from_texts(texts)  # 15 documents: 8 batches of 2
    before = sum(len(p._forward_hooks) for p in organism.hook_dict.values())
    with pytest.raises(ln.errors.PLNDInterrupted, match=f"after {k - 1} of 8 batches") as info, \
            _stop_in_pass(organism, k):
        ln.plnd(organism, corpus, sites=("mlp", "attn.v"), batch_size=2, progress=False)
    stop = info.value
    assert isinstance(stop, KeyboardInterrupt) and not isinstance(stop, Exception)
    assert isinstance(stop.__cause__, KeyboardInterrupt)
    assert sum(len(p._forward_hooks) for p in organism.hook_dict.values()) == before
    assert (stop.batches_done, stop.n_batches, stop.n_docs) == (k - 1, 8, 15)
    assert stop.docs_done == 2 * (k - 1)
    if k == 1:
        assert stop.partial is None
        return
    real = TokenizedCorpus.batches
    with monkeypatch.context() as patch:  # an independent run over the first k - 1 batches
        patch.setattr(TokenizedCorpus, "batches", lambda self, size=8, skip=0: (
            b for i, b in enumerate(real(self, size, skip=skip)) if i < k - 1))
        prefix = ln.plnd(organism, corpus, sites=("mlp", "attn.v"), batch_size=2,
                         progress=False)
    kept = [i for i, n in enumerate(prefix.n_docs.tolist()) if n > 0]
    assert stop.partial.groups == [prefix.groups[i] for i in kept]
    assert stop.partial.n_docs.tolist() == prefix.n_docs[kept].tolist()
    assert int(stop.partial.n_docs.sum()) == stop.docs_done
    for site in ("mlp", "attn.v"):
        assert torch.equal(stop.partial.counts[site], prefix.counts[site][kept])
    stop.partial.neuron_sets("mlp", 0.5)  # usable as a result


def test_shipped_gemma_result():
    from lensneurons.subjects import real_stats

    result = ln.PLNDResult.load(real_stats.data_dir("gemma-3-270m") / "plnd")
    assert result.sites == ["mlp", "attn.q", "attn.k", "attn.v"]
    assert result.counts["mlp"].shape == (14, 18, 2048) and result.n_docs.tolist() == [20] * 14
    assert result.meta["points"]["q"] == "attn.hook_rot_q"
    sets = result.neuron_sets("mlp")
    assert all(len(s) > 0 for s in sets.values())
    shared = torch.stack([s.mask for s in result.activated("mlp").values()]).all(0)
    assert not (sets["fr"].mask & shared).any()


def fragments(lines: list[str], words: int = 3) -> list[str]:
    """Consecutive ``words``-word pieces of the lines: many short, varied documents."""
    pieces = []
    for line in lines:
        w = line.split()
        pieces += [" ".join(w[i:i + words]) for i in range(0, len(w) - words + 1, words)]
    return pieces


def test_default_sets_hold_as_documents_grow_where_the_intersection_empties(organism):
    """The paper's doc_frequency=1.0 empties sets as documents are added; the default does not.

    Short varied documents (3-word pieces of the organism's sample, 25 then 300 per language),
    as in the issue where de/fr/es/it/zh came out empty on a few hundred gettext lines.
    """
    assert (DOC_FREQUENCY, PAPER_DOC_FREQUENCY) == (0.9, 1.0)
    docs = {g: fragments(lines) for g, lines in ln.organism.texts("all").items()}
    few = ln.plnd(organism, ln.Corpus.from_texts({g: d[:25] for g, d in docs.items()}),
                  sites=("mlp",), progress=False)
    with pytest.warns(EmptySetWarning, match=r"doc_frequency=1 .*the paper's rule") as seen:
        many = ln.plnd(organism, ln.Corpus.from_texts({g: d[:300] for g, d in docs.items()}),
                       sites=("mlp",), doc_frequency=1.0, progress=False)
    assert many.n_docs.tolist() == [300] * 7 and many.meta["doc_frequency"] == 1.0
    paper_few = few.table(1.0)["mlp"]
    paper_many = many.table()["mlp"]                 # its own default: 1.0 as passed
    assert (paper_few > 0).all(), paper_few.to_dict()
    empty = paper_many[paper_many == 0].index.tolist()
    assert empty, paper_many.to_dict()               # the intersection emptied some groups...
    assert all(repr(g) in str(seen[0].message) for g in empty)
    assert seen[0].filename == __file__              # ...and plnd says so at the user's call
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptySetWarning)
        default_few = few.table()["mlp"]
        default_many = many.table(DOC_FREQUENCY)["mlp"]
        sets = many.neuron_sets("mlp", DOC_FREQUENCY)   # no warning: every set has units
    assert few.meta["doc_frequency"] == DOC_FREQUENCY
    assert (default_many >= 10).all(), default_many.to_dict()
    assert (default_many >= default_few / 2).all(), (default_few.to_dict(), default_many.to_dict())
    assert [len(s) for s in sets.values()] == default_many.tolist()
    # 1.0 is still the intersection: exactly the units in the top of every document
    for i, g in enumerate(many.groups):
        assert many.activated("mlp", 1.0)[g].mask.equal(many.counts["mlp"][i] == 300)


def test_empty_sets_warn_naming_groups_and_fix(organism):
    """Two groups of the same texts share every activated unit: both sets are empty."""
    lines = ln.organism.texts("heldout")["fr"][:4]
    corpus = ln.Corpus.from_texts({"fr": lines, "fr-copy": list(lines)})
    with pytest.warns(EmptySetWarning) as seen:
        result = ln.plnd(organism, corpus, sites=("mlp", "attn.v"), batch_size=1,
                         progress=False)
    assert len(seen) == 1
    message = str(seen[0].message)
    for part in ("mlp: 'fr' (", "attn.v: 'fr' (", "'fr-copy'", "all shared with every group",
                 "doc_frequency=0.9 over 4 documents per group (with 4 documents, 0.9 means",
                 "texts differ",
                 "lower doc_frequency",
                 "result.neuron_sets('mlp', doc_frequency=0.8)", "top_rate"):
        assert part in message, message
    with pytest.warns(EmptySetWarning, match="exclude='all' .*activated in every group") as seen:
        result.neuron_sets("mlp", exclude="any")
    assert seen[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptySetWarning)
        assert result.table().sum().sum() == 0     # table and plot count, they do not warn
        result.plot()


def test_no_empty_set_warning_on_the_organism_at_the_default(organism):
    corpus = ln.Corpus.from_texts(ln.organism.texts("heldout"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptySetWarning)
        result = ln.plnd(organism, corpus, progress=False)
        for site in result.sites:
            assert min(len(s) for s in result.neuron_sets(site).values()) > 0
    assert result.meta["doc_frequency"] == 0.9
