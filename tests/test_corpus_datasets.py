"""Corpus.from_dataset: Hugging Face datasets (in memory, on disk, parquet streams) as corpora,
budgets per group, early stops of streams, and the language-ID filter. Fully offline: every
dataset is built here (works with datasets 3.x under TL 2 and 5.x under TL 4)."""

from __future__ import annotations

import pytest
import torch

import lensneurons as ln

datasets = pytest.importorskip("datasets")

FR = ["Le chat dort sur le tapis.", "Il pleut depuis ce matin.", "Nous partons demain à la mer.",
      "Elle lit un livre au jardin.", "Le train arrive à midi."]
EN = ["The cat sleeps on the mat.", "It has been raining since this morning.",
      "We leave for the sea tomorrow.", "She reads a book in the garden.",
      "The train arrives at noon."]
DE = ["Die Katze schläft auf der Matte.", "Es regnet seit heute Morgen."]


def interleaved() -> dict[str, list[str]]:
    """Rows of fr, en and de, interleaved (de's rows start late)."""
    rows = []
    for i in range(len(FR)):
        rows += [(FR[i], "fr"), (EN[i], "en")]
        if i >= 2 and i - 2 < len(DE):
            rows.append((DE[i - 2], "de"))
    return {"text": [t for t, _ in rows], "lang": [g for _, g in rows]}


EXPECTED = {"fr": FR, "en": EN, "de": DE}


def same_corpus(corpus, texts, **kwargs):
    expected = ln.Corpus.from_texts(texts, **kwargs)
    assert corpus.groups == expected.groups
    assert corpus.items == expected.items
    assert repr(corpus) == repr(expected)


@pytest.fixture(scope="module")
def dataset():
    return datasets.Dataset.from_dict(interleaved())


def test_dataset_equals_from_texts(dataset, llama_model):
    corpus = ln.Corpus.from_dataset(dataset)
    same_corpus(corpus, EXPECTED)
    assert corpus.language_report is None and corpus.dropped == {}
    expected = ln.Corpus.from_texts(EXPECTED).tokenize(llama_model)
    assert corpus.tokenize(llama_model).n_tokens.tolist() == expected.n_tokens.tolist()


def test_other_column_names_and_extra_columns():
    data = interleaved()
    ds = datasets.Dataset.from_dict({"id": list(range(len(data["text"]))),
                                     "sentence": data["text"], "iso": data["lang"]})
    same_corpus(ln.Corpus.from_dataset(ds, text="sentence", group="iso"), EXPECTED)


def test_pack_window_count_bos_are_passed_on(dataset):
    corpus = ln.Corpus.from_dataset(dataset, pack=True, window=16, count_bos=True)
    assert (corpus.pack, corpus.window, corpus.count_bos) == (True, 16, True)


def test_saved_to_disk_and_read_back(dataset, tmp_path):
    dataset.save_to_disk(str(tmp_path / "ds"))
    loaded = datasets.load_from_disk(str(tmp_path / "ds"))
    same_corpus(ln.Corpus.from_dataset(loaded), EXPECTED)


def test_parquet_stream(dataset, tmp_path):
    path = str(tmp_path / "rows.parquet")
    dataset.to_parquet(path)
    streamed = datasets.load_dataset("parquet", data_files=path, streaming=True)
    assert isinstance(streamed, datasets.IterableDatasetDict)
    same_corpus(ln.Corpus.from_dataset(streamed), EXPECTED)  # its one split, "train"
    same_corpus(ln.Corpus.from_dataset(streamed["train"]), EXPECTED)
    same_corpus(ln.Corpus.from_dataset(streamed, split="train", groups=["en", "fr"],
                                       max_texts_per_group=2),
                {"en": EN[:2], "fr": FR[:2]})


def test_dataset_dict_split_and_keys_as_groups(dataset):
    dd = datasets.DatasetDict({"train": dataset, "test": dataset.select(range(4))})
    same_corpus(ln.Corpus.from_dataset(dd, split="train"), EXPECTED)
    same_corpus(ln.Corpus.from_dataset(dd, split="test"), {"fr": FR[:2], "en": EN[:2]})
    by_language = datasets.DatasetDict({
        "fr": datasets.Dataset.from_dict({"text": FR}),
        "en": datasets.Dataset.from_dict({"text": EN})})
    same_corpus(ln.Corpus.from_dataset(by_language, group=None), {"fr": FR, "en": EN})
    plain = {"en": datasets.Dataset.from_dict({"text": EN}),
             " de ": datasets.Dataset.from_dict({"text": DE}).to_iterable_dataset()}
    same_corpus(ln.Corpus.from_dataset(plain, group=None), {"en": EN, "de": DE})
    same_corpus(ln.Corpus.from_dataset(plain, group=None, groups=["de"]), {"de": DE})


def test_class_label_groups_are_read_as_names():
    data = interleaved()
    features = datasets.Features({"text": datasets.Value("string"),
                                  "lang": datasets.ClassLabel(names=["de", "en", "fr"])})
    ds = datasets.Dataset.from_dict(data, features=features)
    assert isinstance(ds[0]["lang"], int)
    same_corpus(ln.Corpus.from_dataset(ds), EXPECTED)
    same_corpus(ln.Corpus.from_dataset(ds, max_texts_per_group=1),
                {g: t[:1] for g, t in EXPECTED.items()})


def test_groups_keep_some_groups_in_their_order(dataset):
    same_corpus(ln.Corpus.from_dataset(dataset, groups=["de", "fr"]), {"de": DE, "fr": FR})


def test_texts_budget(dataset):
    corpus = ln.Corpus.from_dataset(dataset, max_texts_per_group=2)
    same_corpus(corpus, {"fr": FR[:2], "en": EN[:2], "de": DE[:2]})


def test_token_budget_is_the_shortest_prefix_that_reaches_it(dataset, llama_model):
    budget = 12
    corpus = ln.Corpus.from_dataset(dataset, max_tokens_per_group=budget, tokenizer=llama_model)
    tok = llama_model.tokenizer

    def n(texts):
        return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)

    for group, texts in corpus.items.items():
        assert texts == EXPECTED[group][:len(texts)]
        assert n(texts[:-1]) < budget
        assert n(texts) >= budget or texts == EXPECTED[group]
    counted = corpus.tokenize(llama_model).n_tokens.tolist()
    assert counted == [n(corpus.items[g]) for g in corpus.groups]  # the same tokens
    # the tokenizer itself works as well as the model
    again = ln.Corpus.from_dataset(dataset, max_tokens_per_group=budget, tokenizer=tok)
    assert again.items == corpus.items
    stats = ln.collect(llama_model, corpus, max_tokens_per_group=budget, progress=False)
    assert stats.n_tokens.tolist() == [min(budget, c) for c in counted]


def counted_stream(n_rows: int, limit: int, groups=("fr", "en")):
    """A stream of n_rows alternating rows; reading row ``limit`` (0-based) fails the test."""
    texts = {"fr": FR, "en": EN, "de": DE}

    def rows():
        for i in range(n_rows):
            if i >= limit:
                raise AssertionError(f"read row {i}: the stream should have stopped earlier")
            group = groups[i % len(groups)]
            lines = texts[group]
            yield {"text": lines[(i // len(groups)) % len(lines)], "lang": group}

    return datasets.IterableDataset.from_generator(rows)


def test_stream_stops_once_every_group_is_full():
    stream = counted_stream(10_000, limit=6)  # 3 fr + 3 en: rows 0..5
    corpus = ln.Corpus.from_dataset(stream, groups=["fr", "en"], max_texts_per_group=3)
    same_corpus(corpus, {"fr": FR[:3], "en": EN[:3]})


def test_stream_stops_for_the_groups_asked_for():
    stream = counted_stream(10_000, limit=5, groups=("fr", "en", "de"))  # fr at 0 and 3
    corpus = ln.Corpus.from_dataset(stream, groups=["fr"], max_texts_per_group=2)
    assert corpus.items == {"fr": FR[:2]}


def test_streams_per_group_are_read_only_as_far_as_needed():
    streams = {"fr": counted_stream(10_000, limit=2, groups=("fr",)),
               "en": counted_stream(10_000, limit=2, groups=("en",))}
    corpus = ln.Corpus.from_dataset(streams, group=None, max_texts_per_group=2)
    same_corpus(corpus, {"fr": FR[:2], "en": EN[:2]})


def test_stream_without_groups_is_read_to_its_end():
    stream = counted_stream(8, limit=8)
    corpus = ln.Corpus.from_dataset(stream, max_texts_per_group=2)
    same_corpus(corpus, {"fr": FR[:2], "en": EN[:2]})


def test_split_lines_makes_each_line_a_text():
    article = "Le chat dort.\n\nIl pleut depuis ce matin.\r\n  \nNous partons demain."
    ds = datasets.Dataset.from_dict({"text": [article, "Elle lit."], "lang": ["fr", "fr"]})
    lines = ["Le chat dort.", "Il pleut depuis ce matin.", "Nous partons demain.", "Elle lit."]
    assert ln.Corpus.from_dataset(ds, split_lines=True).items == {"fr": lines}
    assert ln.Corpus.from_dataset(ds, split_lines=True, max_texts_per_group=2).items == {
        "fr": lines[:2]}
    assert ln.Corpus.from_dataset(ds).items == {"fr": [article, "Elle lit."]}


def test_blank_rows_are_dropped_as_from_texts_does():
    ds = datasets.Dataset.from_dict({"text": ["Un.", "  ", "Deux."], "lang": ["fr"] * 3})
    with pytest.warns(UserWarning, match="Dropped 1 of the 3 texts of group 'fr'"):
        corpus = ln.Corpus.from_dataset(ds, max_texts_per_group=2)
    assert corpus.items == {"fr": ["Un.", "Deux."]}  # the blank row counted for no budget


def test_filter_drops_an_english_line_from_a_french_group_and_reports_it():
    ds = datasets.Dataset.from_dict({
        "text": [FR[0], EN[0], FR[1], FR[2], EN[1], FR[3], FR[4], EN[2]],
        "lang": ["fr", "en", "fr", "fr", "fr", "fr", "fr", "en"]})
    corpus = ln.Corpus.from_dataset(ds, filter_language=True)
    assert corpus.items == {"fr": [FR[0], FR[1], FR[2], FR[3], FR[4]], "en": [EN[0], EN[2]]}
    assert corpus.dropped == {"fr": [(EN[1], "en")], "en": []}
    report = corpus.language_report
    assert list(report.index) == ["fr", "en"]
    assert report.loc["fr", ["kept", "dropped", "dropped_as"]].tolist() == [5, 1, "en 1"]
    assert report.loc["en", ["kept", "dropped"]].tolist() == [2, 0]
    assert report.loc["fr", "dropped_share"] == pytest.approx(1 / 6)
    # the same filter on the same texts, through from_texts
    texts = {"fr": [FR[0], FR[1], FR[2], EN[1], FR[3], FR[4]], "en": [EN[0], EN[2]]}
    by_texts = ln.Corpus.from_texts(texts, filter_language=True)
    assert by_texts.items == corpus.items and by_texts.dropped == corpus.dropped
    assert by_texts.language_report.equals(report)


def test_filter_budget_counts_kept_texts_only():
    stream = datasets.IterableDataset.from_generator(
        lambda: iter([{"text": t, "lang": "fr"} for t in [EN[0], FR[0], EN[1], FR[1], FR[2]]]))
    with pytest.warns(UserWarning, match=r"dropped 2 of the 4 texts of group 'fr' \(50%"):
        corpus = ln.Corpus.from_dataset(stream, groups=["fr"], max_texts_per_group=2,
                                        filter_language=True)
    assert corpus.items == {"fr": FR[:2]}
    assert [lang for _, lang in corpus.dropped["fr"]] == ["en", "en"]


def test_filter_accepts_codes_in_any_spelling():
    ds = datasets.Dataset.from_dict({"text": FR[:2] + EN[:2], "iso": ["fra", "fra", "eng", "eng"]})
    corpus = ln.Corpus.from_dataset(ds, group="iso", filter_language=True)
    assert corpus.groups == ["fra", "eng"] and corpus.items == {"fra": FR[:2], "eng": EN[:2]}
    assert corpus.language_report["language"].tolist() == ["fr", "en"]


def test_collect_on_a_dataset_corpus(dataset, llama_model):
    corpus = ln.Corpus.from_dataset(dataset)
    stats = ln.collect(llama_model, corpus, progress=False)
    expected = ln.collect(llama_model, ln.Corpus.from_texts(EXPECTED), progress=False)
    assert stats.groups == ["fr", "en", "de"]
    assert stats.n_tokens.tolist() == expected.n_tokens.tolist()
    assert torch.equal(stats.active, expected.active)
