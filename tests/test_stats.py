"""collect / ActivationStats: exact against a brute-force cache, padding-free, mergeable, saved."""

import pytest
import torch

import lensneurons as ln

TEXTS = {
    "en": ["The cat sleeps on the mat.", "A dog runs in the park today.", "Hello."],
    "fr": ["Le chat dort sur le tapis.", "Un chien court."],
    "ru": ["Кошка спит на ковре.", "Собака бежит."],
}


def brute_force(model, corpus, site_name="mlp"):
    """Statistics from a full activation cache, one sequence at a time."""
    site = ln.get_site(model, site_name)
    tokenized = corpus.tokenize(model)
    n_groups, n_layers = len(corpus.groups), site.view.n_layers
    out = {
        "active": torch.zeros(n_groups, n_layers, site.width, dtype=torch.int64),
        "sum": torch.zeros(n_groups, n_layers, site.width, dtype=torch.float64),
        "sum_sq": torch.zeros(n_groups, n_layers, site.width, dtype=torch.float64),
        "max": torch.full((n_groups, n_layers, site.width), float("-inf")),
    }
    for seq in tokenized.sequences:
        _, cache = model.run_with_cache(seq.tokens[None])
        for layer in range(n_layers):
            name = site.read_hook(layer)
            x = site.units(cache[name], name)[0][seq.counted]
            a = site.values(x)
            out["active"][seq.group, layer] += (x > 0).sum(0)
            out["sum"][seq.group, layer] += a.double().sum(0)
            out["sum_sq"][seq.group, layer] += (a.double() ** 2).sum(0)
            out["max"][seq.group, layer] = torch.maximum(out["max"][seq.group, layer], a.amax(0))
    return out, tokenized.n_tokens


@pytest.mark.parametrize("site_name", ["mlp", "attn.k"])
def test_collect_equals_brute_force(arch_model, site_name):
    corpus = ln.Corpus.from_texts(TEXTS)
    stats = ln.collect(arch_model, corpus, site=site_name, batch_size=3, progress=False)
    expected, n_tokens = brute_force(arch_model, corpus, site_name)
    assert stats.n_tokens.tolist() == n_tokens.tolist()
    assert torch.equal(stats.active, expected["active"])
    torch.testing.assert_close(stats.sum, expected["sum"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(stats.sum_sq, expected["sum_sq"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(stats.max, expected["max"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("site_name", ["mlp", "attn.k"])
def test_counts_only_equal_brute_force_and_hold_no_values(arch_model, site_name):
    corpus = ln.Corpus.from_texts(TEXTS)
    stats = ln.collect(arch_model, corpus, site=site_name, batch_size=3, value_stats=False,
                       progress=False)
    expected, n_tokens = brute_force(arch_model, corpus, site_name)
    assert stats.n_tokens.tolist() == n_tokens.tolist()
    assert torch.equal(stats.active, expected["active"])
    assert stats.sum is None and stats.sum_sq is None and stats.max is None
    with pytest.raises(ln.errors.MissingStatisticError, match="value_stats=True"):
        stats.mean("en")
    sets = ln.lape(stats, top_rate=0.2)  # the count-based detectors need nothing more
    assert sets.groups == list(TEXTS)


def test_counts_only_with_sequence_stats_and_a_resume(tmp_path, llama_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    full = ln.collect(llama_model, corpus, batch_size=2, sequence_stats=True, progress=False)
    lean = ln.collect(llama_model, corpus, batch_size=2, sequence_stats=True, value_stats=False,
                      checkpoint=tmp_path / "ckpt", progress=False)
    assert torch.equal(lean.active, full.active)
    torch.testing.assert_close(lean.seq_mean_max, full.seq_mean_max)
    with pytest.raises(ln.errors.CheckpointMismatchError, match="value_stats"):
        ln.collect(llama_model, corpus, batch_size=2, sequence_stats=True,
                   checkpoint=tmp_path / "ckpt", resume=True, progress=False)
    again = ln.collect(llama_model, corpus, batch_size=2, sequence_stats=True, value_stats=False,
                       checkpoint=tmp_path / "ckpt", resume=True, progress=False)
    assert torch.equal(again.active, full.active)


def test_padding_and_batching_do_not_change_stats(llama_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    one = ln.collect(llama_model, corpus, batch_size=1, progress=False)
    many = ln.collect(llama_model, corpus, batch_size=7, progress=False)
    assert torch.equal(one.active, many.active)
    torch.testing.assert_close(one.sum, many.sum, rtol=1e-5, atol=1e-5)


def test_probabilities_mean_std(llama_model):
    stats = ln.collect(llama_model, ln.Corpus.from_texts(TEXTS), progress=False)
    probs = stats.probs()
    torch.testing.assert_close(probs[1], stats.active[1].double() / stats.n_tokens[1])
    site = ln.get_site(llama_model, "mlp")
    values = []
    for seq in ln.Corpus.from_texts(TEXTS).tokenize(llama_model).sequences:
        if seq.group == 1:
            _, cache = llama_model.run_with_cache(seq.tokens[None])
            values.append(site.values(cache["blocks.0.mlp.hook_pre"][0][seq.counted]))
    values = torch.cat(values).double()
    torch.testing.assert_close(stats.mean("fr")[0].double(), values.mean(0), rtol=1e-4,
                               atol=1e-5)
    torch.testing.assert_close(stats.std("fr")[0].double(), values.std(0, correction=0),
                               rtol=1e-3, atol=1e-5)
    with pytest.raises(ln.errors.UnknownGroupError, match="'de'"):
        stats.mean("de")


def test_merge_is_exact(llama_model):
    whole = ln.collect(llama_model, ln.Corpus.from_texts(TEXTS), progress=False)
    shard_a = {"en": TEXTS["en"][:2], "fr": TEXTS["fr"]}
    shard_b = {"ru": TEXTS["ru"], "en": TEXTS["en"][2:]}
    part_a = ln.collect(llama_model, ln.Corpus.from_texts(shard_a), progress=False)
    part_b = ln.collect(llama_model, ln.Corpus.from_texts(shard_b), progress=False)
    merged = part_a + part_b
    assert merged.groups == ["en", "fr", "ru"]
    assert torch.equal(merged.active, whole.active)
    assert merged.n_tokens.tolist() == whole.n_tokens.tolist()
    torch.testing.assert_close(merged.sum, whole.sum, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(merged.max, whole.max)


def test_max_tokens_per_group(llama_model):
    stats = ln.collect(llama_model, ln.Corpus.from_texts(TEXTS), max_tokens_per_group=4,
                       progress=False)
    assert stats.n_tokens.tolist() == [4, 4, 4]
    assert (stats.active <= 4).all()


def test_sequence_stats(llama_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    stats = ln.collect(llama_model, corpus, sequence_stats=True, batch_size=2, progress=False)
    site = ln.get_site(llama_model, "mlp")
    means = []
    for seq in corpus.tokenize(llama_model).sequences:
        if seq.group != 1:
            continue
        _, cache = llama_model.run_with_cache(seq.tokens[None])
        means.append(site.values(cache["blocks.1.mlp.hook_pre"][0][seq.counted]).mean(0))
    means = torch.stack(means)
    torch.testing.assert_close(stats.seq_mean_max_of("fr")[1], means.amax(0), rtol=1e-4, atol=1e-5)
    assert stats.n_sequences.tolist() == [3, 2, 2]
    # half precision per-sequence means; torch's median of an even count is the lower middle
    torch.testing.assert_close(stats.seq_mean_median_of("fr")[1], means.median(0).values,
                               rtol=1e-2, atol=1e-2)


def test_save_load_roundtrip_and_model_check(tmp_path, llama_model, arch_model):
    stats = ln.collect(llama_model, ln.Corpus.from_texts(TEXTS), progress=False)
    stats.save(tmp_path / "stats")
    assert sorted(p.name for p in (tmp_path / "stats").iterdir()) == ["stats.json",
                                                                      "stats.safetensors"]
    loaded = ln.ActivationStats.load(tmp_path / "stats", model=llama_model)
    assert loaded.groups == stats.groups and torch.equal(loaded.active, stats.active)
    torch.testing.assert_close(loaded.mean("ru"), stats.mean("ru"))
    if arch_model is not llama_model:
        with pytest.raises(ln.errors.ModelMismatchError):
            ln.ActivationStats.load(tmp_path / "stats", model=arch_model)


def test_failing_forward_leaves_no_hook(llama_model):
    class Boom(RuntimeError):
        pass

    def explode(x, *, hook):
        raise Boom

    before = {name: len(hp._forward_hooks) for name, hp in llama_model.hook_dict.items()}
    llama_model.add_hook("blocks.0.mlp.hook_post", explode)  # before collect ends its pass
    try:
        with pytest.raises(Boom):
            ln.collect(llama_model, ln.Corpus.from_texts(TEXTS), progress=False)
    finally:
        llama_model.reset_hooks(including_permanent=True)
    after = {name: len(hp._forward_hooks) for name, hp in llama_model.hook_dict.items()}
    assert after == before


def test_hook_width_mismatch_is_a_typed_error(llama_model, monkeypatch):
    real = ln.get_site(llama_model, "mlp")
    wrong = ln.Site(real.name, real.read_point, real.write_point, real.linear_point,
                    real.width + 1, real.view)
    monkeypatch.setattr("lensneurons.stats.engine.get_site", lambda view, name: wrong)
    with pytest.raises(ln.errors.HookShapeError, match="blocks.0.mlp.hook_pre"):
        ln.collect(llama_model, ln.Corpus.from_texts(TEXTS), progress=False)


def test_from_counts_validation():
    counts = {"en": torch.tensor([[3, 0]]), "fr": torch.tensor([[1, 2]])}
    stats = ln.ActivationStats.from_counts(counts, {"en": 4, "fr": 2})
    assert stats.probs()[1].tolist() == [[0.5, 1.0]]
    with pytest.raises(ln.errors.NegativeCountError):
        ln.ActivationStats.from_counts({"en": torch.tensor([[-1, 0]])}, {"en": 4})
    with pytest.raises(ln.errors.EmptyGroupError):
        ln.ActivationStats.from_counts({"en": torch.tensor([[0, 0]])}, {"en": 0})
    with pytest.warns(UserWarning, match="exceed"):
        ln.ActivationStats.from_counts({"en": torch.tensor([[5, 0]])}, {"en": 4})
    with pytest.raises(ln.errors.MissingStatisticError, match="sum"):
        stats.mean("en")
    with pytest.raises(ln.errors.ShapeMismatchError):
        ln.ActivationStats.from_counts({"en": torch.zeros(2, 3)}, {"fr": 3})


def test_collect_stops_after_the_last_read_hook(arch_model):
    """Nothing after the last layer's read point runs: no later block, no unembedding."""
    view = ln.ModelView(arch_model)
    last = view.n_layers - 1
    fired = []
    spies = [(f"blocks.{last}.mlp.hook_pre", lambda x, hook: fired.append("read")),
             (f"blocks.{last}.hook_resid_post", lambda x, hook: fired.append("after"))]
    with arch_model.hooks(fwd_hooks=spies):
        ln.collect(arch_model, ln.Corpus.from_texts(TEXTS), batch_size=8, progress=False)
        arch_model(arch_model.to_tokens("A full pass."))  # the model itself still runs whole
    assert fired == ["read"] + ["read", "after"]  # collect's one batch, then the full pass
