"""Token views: per-token mean activity of each group's neurons; offline circuitsvis views."""

import json
import re
import shutil
import subprocess

import pytest
import torch

import lensneurons as ln

pytest.importorskip("circuitsvis")

FRENCH = "Les enfants jouent au football dans le jardin."
RUSSIAN = "Кошка спит на тёплом коврике."
MIXED = "The cat sleeps. Le chat dort. Кошка спит."


@pytest.fixture(scope="module")
def organism():
    return ln.organism.load()


@pytest.fixture(scope="module")
def neurons(organism):
    corpus = ln.Corpus.from_texts(ln.organism.texts("train"))
    stats = ln.collect(organism, corpus, progress=False)
    return ln.lape(stats, top_rate=0.10)


def brute_force(model, tokens, neuron_set):
    """Mean over the set's units of act(hook_pre), per position, from run_with_cache."""
    view = ln.ModelView(model)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    total = torch.zeros(tokens.shape[-1], dtype=torch.float64)
    for layer, index in enumerate(neuron_set.indices):
        if len(index):
            act = view.act_fn(cache[f"blocks.{layer}.mlp.hook_pre"][0])
            total += act[:, index].double().sum(-1).cpu()
    return total / len(neuron_set)


def hook_counts(model):
    return {name: len(hp._forward_hooks) for name, hp in model.hook_dict.items()}


def html_escaped(text):
    """A string as it appears in the view's HTML (JSON-escaped, ``<`` as ``\\u003c``)."""
    return json.dumps(text)[1:-1].replace("<", "\\u003c")


def random_sets(model, seed=0, per_layer=5):
    view = ln.ModelView(model)
    generator = torch.Generator().manual_seed(seed)
    sets = {}
    for group in ("a", "b"):
        mask = torch.zeros(view.n_layers, view.d_mlp, dtype=torch.bool)
        for layer in range(view.n_layers):
            mask[layer, torch.randperm(view.d_mlp, generator=generator)[:per_layer]] = True
        sets[group] = ln.NeuronSet.from_mask(mask)
    return ln.NeuronSets(sets)


def test_table_equals_run_with_cache_on_the_organism(organism, neurons):
    before = hook_counts(organism)
    table = ln.viz.token_activity_table(organism, MIXED, neurons)
    assert hook_counts(organism) == before
    tokens = organism.to_tokens(MIXED)
    assert int(tokens[0, 0]) == ln.ModelView(organism).bos_token_id
    assert len(table) == tokens.shape[1] - 1  # the BOS is not a row
    assert table.index.get_level_values("position").tolist() == list(range(1, tokens.shape[1]))
    assert list(table.columns) == neurons.groups
    for group in neurons.groups:
        expected = brute_force(organism, tokens, neurons[group])[1:]
        got = torch.tensor(table[group].to_numpy())
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_table_equals_run_with_cache_on_every_architecture(arch_model):
    sets = random_sets(arch_model)
    text = "Le chat dort sur le tapis chaud. Кошка спит."
    table = ln.viz.token_activity_table(arch_model, text, sets)
    view = ln.ModelView(arch_model)
    ids = list(view.tokenizer(text, add_special_tokens=False)["input_ids"])
    start = 0 if view.bos_token_id is None else 1
    tokens = torch.tensor([[view.bos_token_id, *ids] if start else ids])
    assert len(table) == len(ids)
    for group in sets:
        expected = brute_force(arch_model, tokens, sets[group])[start:]
        torch.testing.assert_close(torch.tensor(table[group].to_numpy()), expected,
                                   atol=1e-5, rtol=0)


def test_french_neurons_fire_more_on_french(organism, neurons):
    french = ln.viz.token_activity_table(organism, FRENCH, neurons).mean()
    russian = ln.viz.token_activity_table(organism, RUSSIAN, neurons).mean()
    assert french["fr"] > french["ru"]
    assert french.idxmax() == "fr"
    assert russian["ru"] > russian["fr"]
    assert russian.idxmax() == "ru"


def test_tokens_are_decoded_without_bos(organism, neurons):
    table = ln.viz.token_activity_table(organism, "Le chat dort.", neurons, groups=["fr"])
    tokens = table.index.get_level_values("token").tolist()
    assert tokens == ["Le", " ch", "at", " d", "ort", "."]
    assert "".join(tokens) == "Le chat dort."


def test_groups_pick_and_order_columns(organism, neurons):
    table = ln.viz.token_activity_table(organism, FRENCH, neurons, groups=["ru", "fr"])
    assert list(table.columns) == ["ru", "fr"]
    full = ln.viz.token_activity_table(organism, FRENCH, neurons)
    assert table["fr"].tolist() == full["fr"].tolist()
    single = ln.viz.token_activity_table(organism, FRENCH, neurons["fr"])
    assert list(single.columns) == [ln.viz.SINGLE_GROUP]
    assert single.iloc[:, 0].tolist() == full["fr"].tolist()


def test_view_is_multi_for_several_groups_and_single_for_one(organism, neurons):
    multi = ln.viz.token_activity(organism, MIXED, neurons, groups=["en", "fr", "ru"])
    assert isinstance(multi, ln.viz.TokenView)
    assert "CircuitsVis.ColoredTokensMulti," in str(multi)
    assert list(multi.table.columns) == ["en", "fr", "ru"]
    assert multi._repr_html_() == str(multi) == multi.show_code()
    one = ln.viz.token_activity(organism, MIXED, neurons, groups=["fr"])
    assert "CircuitsVis.ColoredTokens," in str(one)
    assert repr(one) == f"TokenView({len(one.table)} tokens; groups fr)"


def test_saved_html_has_tokens_and_channels_and_renders_offline(organism, neurons, tmp_path):
    view = ln.viz.token_activity(organism, MIXED, neurons)
    path = ln.viz.save_html(view, tmp_path / "sub" / "activity.html")
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html
    for token in view.table.index.get_level_values("token"):
        assert html_escaped(token) in html
    for group in neurons.groups:
        assert f'"{group}"' in html
    # Nothing is loaded from the network: no script src, no module import from a URL.
    assert re.search(r"<script[^>]*\ssrc\s*=", html, re.IGNORECASE) is None
    assert re.search(r"""(?:import|from)\s*\(?\s*["']https?://""", html) is None
    assert "unpkg.com" not in html
    assert "CircuitsVis.render(" in html  # the inlined bundle's global
    assert view.save(tmp_path / "again.html").read_text(encoding="utf-8") == html


def test_markup_in_tokens_cannot_end_the_script(organism, neurons):
    view = ln.viz.token_activity(organism, "a </script><!-- b", neurons, groups=["en", "fr"])
    html = str(view)
    assert html.count("</script>") == 1 and html.rstrip().endswith("</script>")
    assert "<!--" not in html


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to parse the script")
def test_inline_script_is_valid_javascript(organism, neurons, tmp_path):
    html = str(ln.viz.token_activity(organism, "Le </script> chat", neurons))
    script = re.search(r"<script[^>]*>(.*)</script>", html, re.DOTALL).group(1)
    (tmp_path / "view.mjs").write_text(script, encoding="utf-8")
    run = subprocess.run(["node", "--check", str(tmp_path / "view.mjs")], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]


def test_save_html_takes_circuitsvis_objects_and_strings(tmp_path):
    import circuitsvis.tokens

    rendered = circuitsvis.tokens.colored_tokens(["a", "b"], [0.5, -0.5])
    html = ln.viz.save_html(rendered, tmp_path / "cv.html").read_text(encoding="utf-8")
    assert "unpkg.com" not in html and "CircuitsVis.ColoredTokens," in html
    assert "<p>x</p>" in ln.viz.save_html("<p>x</p>", tmp_path / "s.html").read_text()


def test_empty_text_is_a_typed_error(organism, neurons):
    with pytest.raises(ln.errors.EmptyTokenizationError):
        ln.viz.token_activity(organism, "", neurons)


def test_sets_of_another_model_are_a_typed_error(organism, neurons):
    view = ln.ModelView(organism)
    other = ln.NeuronSet.from_indices([[0, 1]] * view.n_layers, width=view.d_mlp // 2)
    before = hook_counts(organism)
    with pytest.raises(ln.errors.ShapeMismatchError):
        ln.viz.token_activity(organism, FRENCH, {"fr": other})
    deeper = ln.NeuronSet.from_indices([[0]] * (view.n_layers + 1), width=view.d_mlp)
    with pytest.raises(ln.errors.ShapeMismatchError):
        ln.viz.token_activity_table(organism, FRENCH, deeper)
    foreign = ln.NeuronSets({g: neurons[g].with_fingerprint(None) for g in neurons},
                            {**neurons.meta, "fingerprint": {
                                **view.fingerprint(), "embedding_slice": [[0.0] * 8] * 8}})
    with pytest.raises(ln.errors.ModelMismatchError):
        ln.viz.token_activity_table(organism, FRENCH, foreign)
    with pytest.raises(ln.errors.ModelMismatchError, match="different models"):
        ln.NeuronSets(dict(neurons), foreign.meta)  # sets of one model, meta of another
    assert hook_counts(organism) == before


def test_bad_groups_and_sites_are_typed_errors(organism, neurons):
    with pytest.raises(ln.errors.UnknownGroupError):
        ln.viz.token_activity_table(organism, FRENCH, neurons, groups=["xx"])
    with pytest.raises(ln.errors.NoGroupsError):
        ln.viz.token_activity_table(organism, FRENCH, neurons, groups=[])
    empty = ln.NeuronSet(torch.zeros_like(neurons["fr"].mask))
    with pytest.raises(ln.errors.EmptyGroupError):
        ln.viz.token_activity_table(organism, FRENCH, {"fr": neurons["fr"], "none": empty})
    with pytest.raises(ln.errors.ShapeMismatchError, match="site"):
        ln.viz.token_activity_table(organism, FRENCH, neurons, site="attn.v")


def test_text_longer_than_the_context_is_cut_with_a_warning(organism, neurons):
    n_ctx = ln.ModelView(organism).n_ctx
    with pytest.warns(UserWarning, match="context"):
        table = ln.viz.token_activity_table(organism, "Le chat dort. " * n_ctx, neurons,
                                            groups=["fr"])
    assert len(table) == n_ctx - 1
