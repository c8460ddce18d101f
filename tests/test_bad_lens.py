"""Bad inputs to the logit lens, latent-language curves, the tuned lens and MWork (_catalog.py)."""

from __future__ import annotations

import _catalog
import numpy as np
import pytest
import torch
from _catalog import Case

from lensneurons.errors import (
    ContextLengthError,
    EmptyTokenSetError,
    InvalidTextError,
    ParameterError,
    PositionOutOfRangeError,
    ResultNotFoundError,
    ShapeMismatchError,
    UnknownLanguageError,
    VocabularyError,
)
from lensneurons.lens import (
    Patchscope,
    TunedLens,
    latent_language,
    logit_lens,
    mwork,
    prompts,
    stage_split,
    start_tokens,
)

TEXTS = ["Le chat dort sur le tapis.", "Der Hund bellt in der Nacht."] * 4


def items():
    return prompts.translation(src="fr", tgt="de", limit=8)


def lens(c, *inputs, **options):
    return logit_lens(c.model, *(inputs or ("Le chat dort",)), **options)


def same_as_last_depth(result, c):
    """depths=-1 (or [-1]) is the last block's output, as depths=[L]."""
    n = c.model.cfg.n_layers
    assert result.depths == [n]
    assert torch.equal(result.entropy, lens(c, depths=[n]).entropy)


def same_as_int_position(result, c):
    """A numpy integer position reads as the int: same values, same [depth, batch] shape."""
    plain = lens(c, positions=-1)
    assert result.entropy.shape == plain.entropy.shape == (c.model.cfg.n_layers, 1)
    assert torch.equal(result.entropy, plain.entropy)


def de_only(result, c):
    assert result.languages == ("de",) and result.probs.shape[-1] == 1
    both = latent_language(c.model, items())
    assert torch.equal(result.probs[..., 0], both.probs[..., both.languages.index("de")])


def tuned(n_layers=None, d_model=None):
    def build(c):
        return TunedLens(d_model or c.model.cfg.d_model, n_layers or c.model.cfg.n_layers)

    return build


def untrained_is_identity(result, c):
    assert torch.equal(result.entropy, lens(c).entropy)


def patchscope_recorded(result, c):
    """'patchscope' decodes every depth; the last one is the logit lens's."""
    assert result.decoder["name"] == "patchscope" and result.decoder["kv_cache"]
    assert torch.allclose(result.entropy[-1], lens(c).entropy[-1], atol=1e-4)


def logit_recorded(result, c):
    assert result.decoder == {"name": "logit_lens"}
    assert torch.equal(result.entropy, lens(c).entropy)


CASES = [
    # --- logit_lens: tokens and sizes -----------------------------------------------------------
    Case("lens-token-outside-vocabulary", "logit_lens(model, torch.tensor([[1, 5000]]))",
         lambda c: lens(c, torch.tensor([[1, 5000]])), VocabularyError,
         r"Token id 5000 is outside the model's vocabulary \[0, 4096\)"),
    Case("lens-token-negative", "logit_lens(model, torch.tensor([[1, -3]]))",
         lambda c: lens(c, torch.tensor([[1, -3]])), VocabularyError, "Token id -3"),
    Case("lens-token-float", "logit_lens(model, torch.tensor([[1.0, 2.0]]))",
         lambda c: lens(c, torch.tensor([[1.0, 2.0]])), ParameterError, "integer ids"),
    Case("lens-token-empty-batch", "logit_lens(model, torch.zeros(0, 3, dtype=long))",
         lambda c: lens(c, torch.zeros(0, 3, dtype=torch.long)), ParameterError,
         "batch, pos >= 1"),
    Case("lens-prompt-none", "logit_lens(model, ['Le chat', None])",
         lambda c: lens(c, ["Le chat", None]), InvalidTextError, "Prompt 1 is NoneType"),
    Case("lens-prompts-empty", "logit_lens(model, [])",
         lambda c: lens(c, []), ParameterError, "No prompts"),
    Case("lens-prompt-past-context", "logit_lens(model, 'word ' * 400)",
         lambda c: lens(c, "word " * 400), ContextLengthError, "context of 256"),
    Case("lens-top-k-zero", "logit_lens(model, x, top_k=0)",
         lambda c: lens(c, top_k=0), ParameterError, "top_k must be an integer >= 1"),
    Case("lens-top-k-negative", "logit_lens(model, x, top_k=-2)",
         lambda c: lens(c, top_k=-2), ParameterError, "top_k"),
    Case("lens-top-k-string", "logit_lens(model, x, top_k='5')",
         lambda c: lens(c, top_k="5"), ParameterError, "top_k must be an integer"),
    Case("lens-top-k-above-vocabulary", "logit_lens(model, x, top_k=5000)",
         lambda c: lens(c, top_k=5000), ParameterError, "exceeds the vocabulary of 4096"),
    Case("lens-batch-size-zero", "logit_lens(model, x, batch_size=0)",
         lambda c: lens(c, batch_size=0), ParameterError, "batch_size"),
    # --- positions --------------------------------------------------------------------------
    Case("lens-positions-empty-tensor", "logit_lens(model, x, positions=torch.tensor([]))",
         lambda c: lens(c, positions=torch.tensor([], dtype=torch.long)),
         PositionOutOfRangeError, "positions is empty"),
    Case("lens-positions-empty-float-tensor", "logit_lens(model, x, positions=torch.tensor([]))",
         lambda c: lens(c, positions=torch.tensor([])), PositionOutOfRangeError,
         "integer positions"),
    Case("lens-positions-empty-list", "logit_lens(model, x, positions=[])",
         lambda c: lens(c, positions=[]), PositionOutOfRangeError, "positions is empty"),
    Case("lens-positions-float", "logit_lens(model, x, positions=[1.5])",
         lambda c: lens(c, positions=[1.5]), PositionOutOfRangeError, "integer"),
    Case("lens-positions-bool", "logit_lens(model, x, positions=True)",
         lambda c: lens(c, positions=True), PositionOutOfRangeError, "integer"),
    Case("lens-positions-rows", "logit_lens(model, [a, b], positions=torch.zeros(3, 1))",
         lambda c: lens(c, ["Le chat", "Der Hund"], positions=torch.zeros(3, 1, dtype=torch.long)),
         PositionOutOfRangeError, "batch = 2 prompts"),
    Case("lens-positions-numpy-int", "logit_lens(model, x, positions=np.int64(-1))",
         lambda c: lens(c, positions=np.int64(-1)), check=same_as_int_position),
    Case("lens-positions-outside", "logit_lens(model, 'Hi', positions=50)",
         lambda c: lens(c, "Hi", positions=50), PositionOutOfRangeError, "outside prompt 0"),
    # --- depths (0 = embeddings, d = output of block d - 1) ----------------------------------
    Case("lens-depths-minus-one", "logit_lens(model, x, depths=[-1])",
         lambda c: lens(c, depths=[-1]), check=same_as_last_depth),
    Case("lens-depths-int", "logit_lens(model, x, depths=-1)",
         lambda c: lens(c, depths=-1), check=same_as_last_depth),
    Case("lens-depths-99", "logit_lens(model, x, depths=[99])",
         lambda c: lens(c, depths=[99]), PositionOutOfRangeError, "Depth 99 does not exist"),
    Case("lens-depths-below", "logit_lens(model, x, depths=[-6])",
         lambda c: lens(c, depths=[-6]), PositionOutOfRangeError, "Depth -6 does not exist"),
    Case("lens-depths-empty", "logit_lens(model, x, depths=[])",
         lambda c: lens(c, depths=[]), ParameterError, "depths is empty"),
    Case("lens-depths-string", "logit_lens(model, x, depths='0')",
         lambda c: lens(c, depths="0"), ParameterError, "an int or a list of ints"),
    Case("lens-depths-float", "logit_lens(model, x, depths=[1.5])",
         lambda c: lens(c, depths=[1.5]), ParameterError, "each depth must be an integer"),
    # --- token sets -------------------------------------------------------------------------
    Case("lens-token-set-string", "logit_lens(model, x, token_sets={'fr': 'chat'})",
         lambda c: lens(c, token_sets={"fr": "chat"}), ParameterError, "start_tokens"),
    Case("lens-token-set-outside-vocabulary", "logit_lens(model, x, token_sets={'x': [10**7]})",
         lambda c: lens(c, token_sets={"x": [10**7]}), VocabularyError, "outside the vocabulary"),
    Case("lens-token-set-empty", "logit_lens(model, x, token_sets={'x': [[]]})",
         lambda c: lens(c, token_sets={"x": [[]]}), EmptyTokenSetError, "is empty"),
    Case("lens-token-set-floats", "logit_lens(model, x, token_sets={'x': [1.5]})",
         lambda c: lens(c, token_sets={"x": [1.5]}), ParameterError, "token ids"),
    Case("lens-token-sets-list", "logit_lens(model, x, token_sets=[1, 2])",
         lambda c: lens(c, token_sets=[1, 2]), ParameterError, "must be a dict"),
    # --- tuned lens -------------------------------------------------------------------------
    Case("lens-tuned-fewer-layers", "logit_lens(model, x, lens=TunedLens(d_model, 2))",
         lambda c: lens(c, lens=tuned(n_layers=2)(c)), ShapeMismatchError,
         "trained for 2 layers.*the model has 4.*TunedLens.fit"),
    Case("lens-tuned-other-width", "logit_lens(model, x, lens=TunedLens(64, 4))",
         lambda c: lens(c, lens=tuned(d_model=64)(c)), ShapeMismatchError, "width 64"),
    Case("lens-tuned-identity", "logit_lens(model, x, lens=TunedLens.from_model(model))",
         lambda c: lens(c, lens=TunedLens.from_model(c.model)), check=untrained_is_identity),
    Case("lens-tuned-forward-depth", "TunedLens(d, 4)(h, 9)",
         lambda c: tuned()(c)(torch.zeros(1, c.model.cfg.d_model), 9), PositionOutOfRangeError,
         "Depth 9 is outside"),
    Case("lens-tuned-zero-width", "TunedLens(0, 4)",
         lambda c: TunedLens(0, 4), ParameterError, "d_model must be an integer >= 1"),
    Case("lens-tuned-save-dtype-string", "tuned.save(path, dtype='bf16')",
         lambda c: TunedLens.from_model(c.model).save(c.tmp_path / "lens-bf16", dtype="bf16"),
         ParameterError, "torch.bfloat16"),
    Case("lens-not-callable", "logit_lens(model, x, lens='tuned')",
         lambda c: lens(c, lens="tuned"), ParameterError, "translator"),
    Case("lens-unknown-name", "logit_lens(model, x, lens='patch_scope')",
         lambda c: lens(c, lens="patch_scope"), ParameterError,
         r"Unknown lens 'patch_scope': pass None \(the logit lens\), 'patchscope'"),
    Case("lens-not-a-decoder", "logit_lens(model, x, lens=3)",
         lambda c: lens(c, lens=3), ParameterError, "'patchscope' or None, got int"),
    Case("lens-name-patchscope", "logit_lens(model, x, lens='patchscope')",
         lambda c: lens(c, lens="patchscope"), check=patchscope_recorded),
    Case("lens-name-logit", "logit_lens(model, x, lens='logit')",
         lambda c: lens(c, lens="logit"), check=logit_recorded),
    Case("lens-patchscope-target-empty", "Patchscope(target='')",
         lambda c: Patchscope(target=""), ParameterError, "target prompt is empty"),
    Case("lens-patchscope-target-blank", "Patchscope(target='  \\n')",
         lambda c: Patchscope(target="  \n"), ParameterError, "target prompt is empty"),
    Case("lens-patchscope-target-none", "Patchscope(target=None)",
         lambda c: Patchscope(target=None), InvalidTextError, "must be a string, got NoneType"),
    Case("lens-patchscope-position-float", "Patchscope(position=-1.0)",
         lambda c: Patchscope(position=-1.0), ParameterError, "integer token index"),
    Case("lens-patchscope-position-outside", "logit_lens(model, x, lens=Patchscope('a b', 50))",
         lambda c: lens(c, lens=Patchscope("a -> a\n?", position=50)), PositionOutOfRangeError,
         "Position 50 is outside the patchscope's target prompt"),
    Case("lens-patchscope-target-past-context",
         "latent_language(model, items, lens=Patchscope('word ' * 400))",
         lambda c: latent_language(c.model, items(), lens=Patchscope("word " * 400)),
         ContextLengthError, "target prompt is longer than the model's context of 256"),
    Case("lens-fit-steps-zero", "TunedLens.fit(model, texts, steps=0)",
         lambda c: TunedLens.fit(c.model, TEXTS, steps=0), ParameterError, "steps"),
    Case("lens-fit-lr-nan", "TunedLens.fit(model, texts, lr=float('nan'))",
         lambda c: TunedLens.fit(c.model, TEXTS, lr=float("nan")), ParameterError, "lr"),
    Case("lens-fit-seq-len-past-context", "TunedLens.fit(model, texts, seq_len=1000)",
         lambda c: TunedLens.fit(c.model, TEXTS, seq_len=1000), ContextLengthError,
         "seq_len <= 256"),
    Case("lens-fit-one-string", "TunedLens.fit(model, 'one text')",
         lambda c: TunedLens.fit(c.model, "one text"), InvalidTextError, "list of strings"),
    Case("lens-fit-text-none", "TunedLens.fit(model, ['a', None])",
         lambda c: TunedLens.fit(c.model, ["a", None]), InvalidTextError, "Text 1"),
    Case("lens-fit-vocab-subset-zero", "TunedLens.fit(model, texts, vocab_subset=0)",
         lambda c: TunedLens.fit(c.model, TEXTS, vocab_subset=0), ParameterError,
         "vocab_subset"),
    Case("lens-tuned-load-missing", "TunedLens.load('no/such/folder')",
         lambda c: TunedLens.load(c.tmp_path / "no-lens"), ResultNotFoundError, "no saved"),
    # --- latent language, results -----------------------------------------------------------
    Case("lens-latent-languages-empty", "latent_language(model, items, languages=[])",
         lambda c: latent_language(c.model, items(), languages=[]), ParameterError,
         "non-empty list of language codes"),
    Case("lens-latent-languages-string", "latent_language(model, items, languages='de')",
         lambda c: latent_language(c.model, items(), languages="de"), check=de_only),
    Case("lens-latent-languages-numbers", "latent_language(model, items, languages=[1, 2])",
         lambda c: latent_language(c.model, items(), languages=[1, 2]), ParameterError,
         "language codes"),
    Case("lens-latent-items-empty", "latent_language(model, [])",
         lambda c: latent_language(c.model, []), ParameterError, "items is empty"),
    Case("lens-latent-items-strings", "latent_language(model, ['Le chat'])",
         lambda c: latent_language(c.model, ["Le chat"]), ParameterError, "LensItem"),
    Case("lens-latent-ci", "latent_language(model, items, ci='t')",
         lambda c: latent_language(c.model, items(), ci="t"), ParameterError, "'bootstrap'"),
    Case("lens-latent-unknown-quantity", "latent_language(model, items).mean('zz')",
         lambda c: latent_language(c.model, items()).mean("zz"), UnknownLanguageError,
         "'zz' was not measured"),
    Case("lens-latent-interval-n-boot", "result.interval('de', n_boot=0)",
         lambda c: latent_language(c.model, items(), ci="bootstrap").interval("de", n_boot=0),
         ParameterError, "n_boot"),
    Case("lens-result-unknown-set", "logit_lens(model, x).set_prob('fr')",
         lambda c: lens(c).set_prob("fr"), UnknownLanguageError, "No token set 'fr'"),
    Case("lens-result-top-tokens-zero", "logit_lens(model, x).top_tokens(0)",
         lambda c: lens(c).top_tokens(0), ParameterError, "k must be an integer >= 1"),
    # --- MWork, prompts, Start(w) -----------------------------------------------------------
    Case("lens-mwork-set-not-hooks", "mwork(model, items, sets['fr'])",
         lambda c: mwork(c.model, items(), c.sets["fr"]), ParameterError,
         r"\(hook name, function\) pairs"),
    Case("lens-mwork-n1-n2-too-many", "mwork(model, items, hooks, n1=3, n2=3)",
         lambda c: mwork(c.model, items(), [], n1=3, n2=3), ParameterError,
         "exceed the model's 4"),
    Case("lens-mwork-hook-typo", "mwork(model, items, [('blocks.9.mlp.hook_post', fn)])",
         lambda c: mwork(c.model, items(), [("blocks.9.mlp.hook_post", lambda x, hook: x)]),
         ParameterError, r"does not have: \['blocks\.9\.mlp\.hook_post'\]"),
    Case("lens-mwork-neurons-other-model", "mwork(model, items, hooks, neurons=mask[8, 16])",
         lambda c: mwork(c.model, items(), [], neurons=torch.ones(8, 16, dtype=torch.bool)),
         ShapeMismatchError, "cover 8 blocks, the model has 4"),
    Case("lens-mwork-neurons-string", "mwork(model, items, hooks, neurons='fr')",
         lambda c: mwork(c.model, items(), [], neurons="fr"), ParameterError,
         "neurons must be a NeuronSet"),
    Case("lens-stage-split-negative", "stage_split(n_layers=4, n1=-1)",
         lambda c: stage_split(n_layers=4, n1=-1), ParameterError, "n1 must be an integer >= 0"),
    Case("lens-stage-split-nothing", "stage_split()",
         lambda c: stage_split(), ParameterError, "Pass baseline curves"),
    Case("lens-prompts-limit-negative", "prompts.translation(src='fr', tgt='de', limit=-1)",
         lambda c: prompts.translation(src="fr", tgt="de", limit=-1), ParameterError, "limit"),
    Case("lens-prompts-n-demos-negative", "prompts.cloze(lang='fr', n_demos=-2)",
         lambda c: prompts.cloze(lang="fr", n_demos=-2), ParameterError, "n_demos"),
    Case("lens-prompts-words-not-lists", "prompts.translation({'fr': 'chat'}, src='fr', ...)",
         lambda c: prompts.translation({"fr": "chat"}, src="fr", tgt="de"), ParameterError,
         r"\{language: WordList\}"),
    Case("lens-prompts-language-list", "prompts.translation(src=['fr'], tgt='de')",
         lambda c: prompts.translation(src=["fr"], tgt="de"), UnknownLanguageError,
         "code such as 'fr'"),
    Case("lens-start-tokens-none", "start_tokens(tokenizer, None)",
         lambda c: start_tokens(c.model.tokenizer, None), InvalidTextError,
         "word must be a string"),
]


@pytest.mark.parametrize("case", _catalog.params(CASES))
def test_case(case, bad):
    _catalog.run_case(case, bad, _catalog.area_of(__name__))
