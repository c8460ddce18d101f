"""Perplexity and the deactivation matrix against a direct computation."""

import copy
import importlib

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import lensneurons as ln
from lensneurons.errors import EvaluationInterrupted
from lensneurons.evaluate import SequenceNLL, deltas
from lensneurons.evaluate.nll import PerplexityMatrix

TEXTS = {"en": ["The cat sleeps on the mat.", "A dog runs."],
         "fr": ["Le chat dort sur le tapis.", "Un chien court."]}


@torch.no_grad()
def direct_nll(model, corpus, group):
    total, count = 0.0, 0
    for seq in corpus.tokenize(model).sequences:
        if seq.group != corpus.groups.index(group):
            continue
        logits = model(seq.tokens[None])[0, :-1]
        nll = F.cross_entropy(logits, seq.tokens[1:], reduction="none")
        total += float(nll[seq.counted[1:]].sum())
        count += int(seq.counted[1:].sum())
    return total / count


def test_perplexity_matches_direct_computation(arch_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    table = ln.perplexity(arch_model, corpus, batch_size=3, progress=False).table()
    for group in corpus.groups:
        assert table.loc[group, "mean_nll"] == pytest.approx(direct_nll(arch_model, corpus, group),
                                                             rel=1e-4)
    assert table["ppl"].tolist() == pytest.approx(np.exp(table["mean_nll"]).tolist())


def test_perplexity_under_hooks_changes(llama_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    mask = torch.ones(2, 128, dtype=torch.bool)
    clean = ln.perplexity(llama_model, corpus, progress=False).table()
    broken = ln.perplexity(llama_model, corpus, progress=False,
                           fwd_hooks=ln.deactivate(ln.NeuronSet.from_mask(mask))).table()
    assert (broken["mean_nll"] != clean["mean_nll"]).all()


def test_matrix_rows_columns_and_helpers(llama_model):
    corpus = ln.Corpus.from_texts(TEXTS)
    stats = ln.collect(llama_model, corpus, progress=False)
    neurons = ln.lape(stats, top_rate=0.05, filter_rate=0.5, bar_ratio=0.5)
    matrix = ln.perplexity_matrix(llama_model, corpus, neurons, progress=False)
    table = matrix.table()
    assert list(table.index) == ["none", "en", "fr", "random:en", "random:fr"]
    assert list(table.columns) == ["en", "fr"]
    clean = ln.perplexity(llama_model, corpus, progress=False).table()["mean_nll"]
    assert table.loc["none"].tolist() == pytest.approx(clean.tolist())
    delta = ln.nll_delta(matrix)
    assert (delta.loc["none"] == 0).all()
    assert ln.evaluate.ppl_ratio(matrix).loc["fr", "fr"] == pytest.approx(
        float(torch.tensor(delta.loc["fr", "fr"]).exp()))
    fig = ln.viz.plot_matrix(delta)
    assert fig.axes[0].get_ylabel() == "deactivated"


# --- Row-wise scoring, per-sequence statistics and paired bootstrap intervals ---------------


@pytest.fixture(scope="module")
def organism():
    return ln.organism.load()


@pytest.fixture(scope="module")
def heldout():
    texts = ln.organism.texts("heldout")
    return ln.Corpus.from_texts({g: texts[g] for g in ("fr", "ru")})


@pytest.fixture(scope="module")
def ru_neurons():
    """Every unit of layer 0 (not Russian-specific): deactivating it clearly hurts."""
    mask = torch.zeros(4, 2048, dtype=torch.bool)
    mask[0] = True
    return ln.NeuronSets({"ru": ln.NeuronSet.from_mask(mask)})


@torch.no_grad()
def whole_batch_nll(model, corpus, batch_size):
    """The former computation: one cross-entropy over the whole batch's fp32 logits."""
    sums, groups = [], []
    for batch in corpus.tokenize(model).batches(batch_size):
        logits = model(batch.tokens)[:, :-1]
        targets = batch.tokens[:, 1:]
        per_token = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                    reduction="none").view(targets.shape)
        sums.append((per_token.double() * batch.counted[:, 1:]).sum(1))
        groups.append(batch.rows)
    return torch.cat(sums).numpy(), torch.cat(groups).numpy()


def test_row_wise_nll_equals_whole_batch_cross_entropy(organism, heldout):
    result = ln.perplexity(organism, heldout, batch_size=8, progress=False)
    table, per_sequence = result.table(), result.per_sequence
    old_sums, old_groups = whole_batch_nll(organism, heldout, 8)
    assert per_sequence.nll_sum == pytest.approx(old_sums, rel=1e-6, abs=1e-6)
    assert per_sequence.group.tolist() == [heldout.groups[g] for g in old_groups]
    for k, group in enumerate(heldout.groups):
        old_mean = old_sums[old_groups == k].sum() / table.loc[group, "n_tokens"]
        assert table.loc[group, "mean_nll"] == pytest.approx(old_mean, abs=1e-6)


@pytest.mark.parametrize("piece_rows", [None, 3])
def test_scoring_reads_small_fp32_pieces(organism, heldout, monkeypatch, piece_rows):
    """Each cross-entropy call scores one piece of one row, never the batch's logits; smaller
    pieces give the same NLL."""
    perplexity_module = importlib.import_module("lensneurons.evaluate.perplexity")
    expected = ln.perplexity(organism, heldout, batch_size=8, progress=False)
    vocab = organism.cfg.d_vocab
    if piece_rows is not None:
        monkeypatch.setattr(perplexity_module, "_PIECE_ELEMENTS", piece_rows * vocab)
    calls = []
    cross_entropy = F.cross_entropy

    def spy(logits, targets, *args, **kwargs):
        calls.append((tuple(logits.shape), logits.dtype))
        return cross_entropy(logits, targets, *args, **kwargs)

    monkeypatch.setattr(F, "cross_entropy", spy)
    result = ln.perplexity(organism, heldout, batch_size=8, progress=False)
    longest = max(len(seq.tokens) for seq in heldout.tokenize(organism).sequences)
    assert calls and all(len(shape) == 2 and dtype == torch.float32 for shape, dtype in calls)
    rows = max(shape[0] for shape, _ in calls)
    assert rows < longest  # one row's positions at most: never [8, pos, vocab]
    if piece_rows is not None:
        assert rows == piece_rows
    assert result.per_sequence.nll_sum == pytest.approx(expected.per_sequence.nll_sum,
                                                        rel=1e-6, abs=1e-6)


def test_per_sequence_sums_add_up_to_the_table(organism, heldout):
    result = ln.perplexity(organism, heldout, batch_size=5, max_tokens_per_group=300,
                           progress=False)
    table, per_sequence = result.table(), result.per_sequence
    assert len(per_sequence) == len(heldout.tokenize(organism).limit(300).sequences)
    frame = per_sequence.table()
    assert list(frame.columns) == ["group", "nll_sum", "n_tokens"]
    assert frame["nll_sum"].dtype == np.float64
    for group in heldout.groups:
        rows = frame[frame["group"] == group]
        total = 0.0
        for value in rows["nll_sum"]:  # in order, as the table accumulates them
            total += value
        assert int(rows["n_tokens"].sum()) == table.loc[group, "n_tokens"] == 300
        assert total / 300 == table.loc[group, "mean_nll"]
    again = ln.perplexity(organism, heldout, batch_size=5, max_tokens_per_group=300,
                          progress=False)
    assert again.per_sequence == per_sequence  # same order on every run


def test_matrix_per_sequence_data_survive_selection_and_saving(organism, heldout, ru_neurons,
                                                                tmp_path):
    matrix = ln.perplexity_matrix(organism, heldout, ru_neurons, random_baseline=False,
                                  progress=False)
    per_sequence = matrix.per_sequence
    table = matrix.table()
    assert list(per_sequence) == ["none", "ru"]
    assert per_sequence["none"] == ln.perplexity(organism, heldout,
                                                 progress=False).per_sequence
    assert per_sequence["ru"].same_sequences(per_sequence["none"])
    assert per_sequence["ru"] != per_sequence["none"]
    derived = [matrix.select(["none", "ru"], ["ru"]), matrix.select(), matrix.select(["ru"]),
               PerplexityMatrix.load(matrix.save(tmp_path / "matrix"))]
    for result in derived:
        assert result.per_sequence["ru"] == per_sequence["ru"]
    assert (ln.nll_delta(matrix) == table - table.loc["none"]).all().all()
    full = ln.nll_delta(matrix, interval=0.9)
    part = ln.nll_delta(matrix.select(["none", "ru"], ["ru"]), interval=0.9)
    assert part.loc[("ru", "ru")].tolist() == full.loc[("ru", "ru")].tolist()
    loaded = ln.nll_delta(derived[-1], interval=0.9)
    assert loaded.loc[("ru", "ru")].tolist() == full.loc[("ru", "ru")].tolist()
    swapped = matrix.select({"ru": "none", "none": "ru"})  # rows renamed with their sequences
    assert swapped.per_sequence["none"] == per_sequence["ru"]
    own = ln.nll_delta(matrix).loc["ru", "ru"]
    assert ln.nll_delta(swapped).loc["ru", "ru"] == pytest.approx(-own)

    table.to_csv(tmp_path / "matrix.csv")
    back = pd.read_csv(tmp_path / "matrix.csv", index_col=0)
    assert ln.nll_delta(back).to_numpy() == pytest.approx(ln.nll_delta(matrix).to_numpy())
    with pytest.raises(ln.errors.MissingStatisticError, match="perplexity_matrix"):
        ln.nll_delta(back, interval=0.95)
    hidden = table.copy()
    hidden.attrs = {"per_sequence": per_sequence}  # the former hidden channel is refused
    for function in (ln.nll_delta, ln.evaluate.ppl_ratio, ln.specificity):
        with pytest.raises(ln.errors.ParameterError, match="PerplexityMatrix"):
            function(hidden)
    with pytest.raises(ValueError, match="interval"):
        ln.nll_delta(matrix, interval=95)
    with pytest.raises(ValueError, match="n_boot"):
        ln.nll_delta(matrix, interval=0.95, n_boot=0)


def test_interval_contains_delta_and_narrows_with_more_text(organism, heldout, ru_neurons):
    widths = []
    for cap in (100, None):
        matrix = ln.perplexity_matrix(organism, heldout, ru_neurons, random_baseline=False,
                                      max_tokens_per_group=cap, progress=False)
        ci = ln.nll_delta(matrix, interval=0.95)
        assert list(ci.columns) == ["delta", "low", "high", "n_sequences"]
        assert ci.index.names == ["deactivated", "evaluated"]
        table = matrix.table()
        assert ci["delta"].unstack().loc[table.index, table.columns].equals(
            ln.nll_delta(matrix).rename_axis(index="deactivated", columns="evaluated"))
        assert (ci.loc["none", ["delta", "low", "high"]] == 0).all().all()
        cell = ci.loc[("ru", "ru")]
        assert cell["low"] > 0  # layer 0's MLP off: clearly worse
        # the percentile interval agrees with the delta method's normal interval of the ratio
        # sum(d_i) / sum(n_i) over resampled sequences: SE = sqrt(sum((d_i - delta n_i)^2)) / N
        seqs = matrix.per_sequence
        chosen = (seqs["none"].group == "ru") & (seqs["none"].n_tokens > 0)
        diffs = seqs["ru"].nll_sum[chosen] - seqs["none"].nll_sum[chosen]
        n_tok = seqs["none"].n_tokens[chosen]
        se = np.sqrt(((diffs - cell["delta"] * n_tok) ** 2).sum()) / n_tok.sum()
        assert cell["high"] - cell["low"] == pytest.approx(2 * 1.959964 * se, rel=0.25)
        widths.append(cell["high"] - cell["low"])
    assert ci.loc[("ru", "ru"), "n_sequences"] == 32
    assert widths[1] < 0.7 * widths[0]


def test_ctrl_c_keeps_the_finished_rows(organism, heldout, ru_neurons):
    """A KeyboardInterrupt from a hook in the second row's first pass: row 'none' survives."""
    first_row = heldout.tokenize(organism).n_batches(8)
    passes = []

    def interrupt_second_row(x, hook):
        passes.append(1)
        if len(passes) > first_row:
            raise KeyboardInterrupt

    def n_hooks():
        return sum(len(point._forward_hooks) for point in organism.hook_dict.values())

    with organism.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", interrupt_second_row)]):
        before = n_hooks()
        with pytest.raises(EvaluationInterrupted,
                           match=r"in row 'ru'; 1 of 2 rows had finished \(none\)") as info:
            ln.perplexity_matrix(organism, heldout, ru_neurons, random_baseline=False,
                                 progress=False)
        assert n_hooks() == before  # the deactivation hooks of the row were removed
    stop = info.value
    assert isinstance(stop, KeyboardInterrupt) and not isinstance(stop, Exception)
    assert isinstance(stop.__cause__, KeyboardInterrupt)
    assert stop.finished == ["none"] and stop.stopped_at == "ru"
    partial = stop.partial.table()
    assert list(partial.index) == ["none"] and list(partial.columns) == ["fr", "ru"]
    clean = ln.perplexity(organism, heldout, progress=False)
    assert partial.loc["none"].tolist() == clean.table()["mean_nll"].tolist()
    assert stop.partial.per_sequence["none"] == clean.per_sequence
    assert len(passes) == first_row + 1  # nothing ran after the interrupt


def test_ctrl_c_before_any_row_gives_an_empty_partial(organism, heldout, ru_neurons):
    def interrupt(x, hook):
        raise KeyboardInterrupt

    with organism.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", interrupt)]):
        with pytest.raises(EvaluationInterrupted, match="row 'none'; 0 of 2") as info:
            ln.perplexity_matrix(organism, heldout, ru_neurons, random_baseline=False,
                                 progress=False)
    partial = info.value.partial.table()
    assert partial.empty and list(partial.columns) == ["fr", "ru"]


GROUPS = ("en", "fr")


def synthetic_matrix(rows, group, n_tokens):
    """A matrix with per-sequence data built by hand: ``rows`` maps row name to NLL sums."""
    per_sequence = {name: SequenceNLL(GROUPS, group, nll, n_tokens) for name, nll in rows.items()}
    matrix = pd.DataFrame({g: [nll[group == g].sum() / n_tokens[group == g].sum()
                               for nll in rows.values()] for g in GROUPS}, index=list(rows))
    return PerplexityMatrix(matrix, per_sequence)


def brute_force_interval(row, none, n_tokens, draws, interval, draws_none=None):
    """Percentile interval of the token-weighted mean difference, one resample at a time."""
    draws_none = draws if draws_none is None else draws_none
    boots = [row[i].sum() / n_tokens[i].sum() - none[j].sum() / n_tokens[j].sum()
             for i, j in zip(draws, draws_none)]
    return np.quantile(boots, [(1 - interval) / 2, (1 + interval) / 2])


def synthetic_sequences(seed=1, m=(30, 40)):
    gen = np.random.default_rng(seed)
    group = np.array(["en"] * m[0] + ["fr"] * m[1])
    gen.shuffle(group)
    n_tokens = gen.integers(5, 60, size=len(group))
    none = gen.uniform(2, 6, size=len(group)) * n_tokens  # per-token NLL varies a lot
    return group, n_tokens, none


@pytest.mark.parametrize("block", [1 << 22, 7])  # resamples drawn at once or in blocks
def test_bootstrap_equals_brute_force_numpy(monkeypatch, block):
    monkeypatch.setattr(deltas, "_BOOTSTRAP_BLOCK", block)
    group, n_tokens, none = synthetic_sequences()
    hurt = none + np.random.default_rng(2).normal(0.3, 0.4, size=len(group)) * n_tokens
    matrix = synthetic_matrix({"none": none, "fr": hurt}, group, n_tokens)
    ci = ln.nll_delta(matrix, interval=0.9, n_boot=200, seed=5)
    for j, g in enumerate(GROUPS):
        chosen = group == g
        m = int(chosen.sum())
        draws = np.random.default_rng([5, j]).integers(0, m, size=(200, m))
        expected = brute_force_interval(hurt[chosen], none[chosen], n_tokens[chosen], draws, 0.9)
        assert ci.loc[("fr", g), ["low", "high"]].tolist() == pytest.approx(expected, rel=1e-10)
        assert ci.loc[("fr", g), "delta"] == pytest.approx(
            (hurt[chosen].sum() - none[chosen].sum()) / n_tokens[chosen].sum(), rel=1e-12)
        assert ci.loc[("fr", g), "n_sequences"] == m


def test_paired_interval_removes_shared_variation():
    group, n_tokens, none = synthetic_sequences()
    shifted = none + 0.1 * n_tokens  # every token 0.1 nats worse
    matrix = synthetic_matrix({"none": none, "fr": shifted}, group, n_tokens)
    ci = ln.nll_delta(matrix, interval=0.95, n_boot=500)
    for g in GROUPS:
        low, delta, high = ci.loc[("fr", g), ["low", "delta", "high"]]
        assert low == pytest.approx(0.1) and delta == pytest.approx(0.1)
        assert high - low < 1e-9  # paired: the shift is the same in every resample
        chosen = group == g
        m = int(chosen.sum())
        gen = np.random.default_rng(0)
        unpaired = brute_force_interval(shifted[chosen], none[chosen], n_tokens[chosen],
                                        gen.integers(0, m, size=(500, m)), 0.95,
                                        draws_none=gen.integers(0, m, size=(500, m)))
        assert unpaired[1] - unpaired[0] > 0.3  # unpaired: between-sequence noise dominates
        assert unpaired[0] < 0.1 < unpaired[1]


def test_sequence_nll_is_an_immutable_value():
    group, n_tokens, none = synthetic_sequences()
    data = SequenceNLL(GROUPS, group, none, n_tokens)
    assert copy.deepcopy(data) is data
    assert data == SequenceNLL(GROUPS, group.tolist(), none.copy(), n_tokens.copy())
    assert data != SequenceNLL(GROUPS, group, none + 1, n_tokens)
    with pytest.raises(ValueError):
        data.nll_sum[0] = 1.0
