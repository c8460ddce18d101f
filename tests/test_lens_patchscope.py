"""Patchscope decoding (``lens="patchscope"``) against a brute-force patching loop.

The reference patches one prompt at one depth at a time: it runs the source prompt alone,
captures its residual at the last position with a hook, runs the whole target prompt alone with a
hook that replaces the target's last position at the same hook point, and takes the softmax of the
model's own logits there. The lens batches every prompt and depth, reuses the target prefix's keys
and values and stops after the last block; both must give the same probabilities.
"""

from __future__ import annotations

import _catalog
import matplotlib
import torch

import lensneurons as ln
from lensneurons.lens import (
    LatentLanguageResult,
    LensResult,
    Patchscope,
    latent_language,
    logit_lens,
    patchscope,
    prompts,
)
from lensneurons.lens.patchscope import DEFAULT_TARGET

matplotlib.use("Agg")

PROMPTS = ["Le chat dort sur le", "Der Hund", "The cat sleeps on the warm"]
SET = [5, 17, 40, 99]


def hook_name(depth: int) -> str:
    """Written out here, independently of the package: 0 = embeddings, d = block d - 1's output."""
    return "blocks.0.hook_resid_pre" if depth == 0 else f"blocks.{depth - 1}.hook_resid_post"


def brute_force(model, prompt: str, depth: int, target: str = DEFAULT_TARGET) -> torch.Tensor:
    """P(next token) at the target's last position with ``prompt``'s last state patched in."""
    got = {}

    def capture(x, hook):
        got["h"] = x[0, -1].clone()

    def patch(x, hook):
        x = x.clone()
        x[0, -1] = got["h"]
        return x

    with torch.no_grad():
        with model.hooks(fwd_hooks=[(hook_name(depth), capture)]):
            model(model.to_tokens(prompt))
        with model.hooks(fwd_hooks=[(hook_name(depth), patch)]):
            logits = model(model.to_tokens(target))
    return logits[0, -1].float().softmax(-1)


def compare(model, result: LensResult, prompts_: list[str], target: str = DEFAULT_TARGET):
    for i, depth in enumerate(result.depths):
        for b, prompt in enumerate(prompts_):
            p = brute_force(model, prompt, depth, target)
            entropy = -(p * p.clamp_min(1e-30).log2()).sum()
            top = p.topk(result.top_probs.shape[-1]).values
            assert torch.allclose(result.top_probs[i, b], top, atol=2e-5), (depth, b)
            assert abs(float(result.entropy[i, b]) - float(entropy)) < 2e-3, (depth, b)
            assert abs(float(result.set_probs[i, b, 0]) - float(p[SET].sum())) < 2e-5, (depth, b)


def all_depths(model):
    return list(range(model.cfg.n_layers + 1))


def test_patchscope_matches_brute_force(arch_model):
    model = arch_model
    before = _catalog.hook_count(model)
    result = logit_lens(model, PROMPTS, lens="patchscope", depths=all_depths(model), top_k=5,
                        token_sets={"s": SET}, batch_size=2)
    assert _catalog.hook_count(model) == before, "a hook leaked"
    assert result.decoder["name"] == "patchscope"
    assert result.decoder["kv_cache"] is True  # every tiny architecture reuses the prefix
    assert result.entropy.shape == (model.cfg.n_layers + 1, len(PROMPTS))
    compare(model, result, PROMPTS)


def test_uncached_fallback_matches_brute_force(arch_model, monkeypatch):
    """Without a prefix cache every row runs the whole target prompt: the same numbers."""
    model = arch_model
    monkeypatch.setattr(ln.ModelView, "prefix_cache", lambda view, prefix: None)
    result = logit_lens(model, PROMPTS[:2], lens=Patchscope(), depths=all_depths(model),
                        top_k=5, token_sets={"s": SET})
    assert result.decoder["kv_cache"] is False
    compare(model, result, PROMPTS[:2])


def test_a_disagreeing_cache_is_not_used(llama_model, monkeypatch):
    """The per-call check: a cached pass that differs from the plain one falls back to it."""
    model = llama_model
    real = patchscope.BoundPatchscope._run_cached

    def wrong(self, rows, row_depth):
        return real(self, rows, row_depth) + 1.0

    monkeypatch.setattr(patchscope.BoundPatchscope, "_run_cached", wrong)
    result = logit_lens(model, PROMPTS[:2], lens="patchscope", top_k=5, token_sets={"s": SET})
    assert result.decoder["kv_cache"] is False
    compare(model, result, PROMPTS[:2])


def test_another_target_prompt_changes_the_decoding(organism):
    model = organism  # trained: its decodings depend on the target prompt (random models barely)
    other = "Katze -> Katze\nMond -> Mond\n?"
    default = logit_lens(model, PROMPTS, lens="patchscope", top_k=5, token_sets={"s": SET})
    custom = logit_lens(model, PROMPTS, lens=Patchscope(target=other), top_k=5,
                        token_sets={"s": SET})
    assert custom.decoder["target"] == other
    assert (default.entropy[:-1] - custom.entropy[:-1]).abs().max() > 0.1  # bits
    compare(model, custom, PROMPTS, target=other)
    # the last depth is the last block's output: nothing runs after the patch
    assert torch.allclose(default.entropy[-1], custom.entropy[-1], atol=1e-4)


def test_last_depth_is_the_logit_lens_and_the_patch_reaches_the_output(llama_model):
    model = llama_model
    scope = logit_lens(model, PROMPTS, lens="patchscope", top_k=5)
    plain = logit_lens(model, PROMPTS, top_k=5)
    assert plain.decoder == {"name": "logit_lens"}
    assert torch.allclose(scope.top_probs[-1], plain.top_probs[-1], atol=1e-5)
    assert torch.equal(scope.top_ids[-1], plain.top_ids[-1])
    # different sources give different decodings at depth 1: the patch is not ignored
    assert not torch.allclose(scope.top_probs[0, 0], scope.top_probs[0, 1], atol=1e-4)


def test_the_target_read_from_itself_is_its_own_output(llama_model):
    """Source = target: patching its own state back changes nothing, at every depth."""
    model = llama_model
    result = logit_lens(model, DEFAULT_TARGET, lens="patchscope", depths=all_depths(model),
                        top_k=5)
    with torch.no_grad():
        own = model(model.to_tokens(DEFAULT_TARGET))[0, -1].float().softmax(-1).topk(5).values
    for i in range(len(result.depths)):
        assert torch.allclose(result.top_probs[i, 0], own, atol=2e-5)


def test_several_positions_and_a_target_position(llama_model):
    model = llama_model
    both = logit_lens(model, PROMPTS, positions=[-2, -1], lens="patchscope", top_k=3)
    last = logit_lens(model, PROMPTS, positions=-1, lens="patchscope", top_k=3)
    assert both.entropy.shape == (model.cfg.n_layers, len(PROMPTS), 2)
    assert torch.allclose(both.entropy[..., 1], last.entropy, atol=1e-4)
    # position=-1 of a longer target is position len - 2 of it with the last token dropped
    short = logit_lens(model, PROMPTS, lens=Patchscope(target=DEFAULT_TARGET[:-2]), top_k=3)
    inner = logit_lens(model, PROMPTS, lens=Patchscope(target=DEFAULT_TARGET, position=-3),
                       top_k=3)
    assert torch.allclose(short.entropy, inner.entropy, atol=1e-4)


def test_runs_under_active_hooks_and_leaves_them(organism):
    """An active intervention applies to the target pass too; it stays registered."""
    model = organism
    assert "blocks.1.hook_mlp_out" in model.hook_dict
    plain = logit_lens(model, PROMPTS[:1], lens="patchscope", top_k=3)

    def zero_mlp(x, hook):
        return torch.zeros_like(x)

    with model.hooks(fwd_hooks=[("blocks.1.hook_mlp_out", zero_mlp)]):
        inside = _catalog.hook_count(model)
        masked = logit_lens(model, PROMPTS[:1], lens="patchscope", top_k=3)
        assert _catalog.hook_count(model) == inside
    # depth 1 is block 0's output: its source state is unchanged, the target's block 1 is not
    assert abs(float(plain.entropy[0, 0]) - float(masked.entropy[0, 0])) > 1e-2


def test_latent_language_with_three_decoders(organism, tmp_path):
    model = organism
    items = prompts.translation(src="fr", tgt="de", limit=6)
    tuned = ln.lens.TunedLens.from_model(model)
    curves = {name: latent_language(model, items, lens=lens, label=name)
              for name, lens in [("logit", None), ("tuned", tuned), ("patchscope", "patchscope")]}
    assert [c.decoder["name"] for c in curves.values()] == ["logit_lens", "tuned_lens",
                                                            "patchscope"]
    scope = curves["patchscope"]
    assert isinstance(scope, LatentLanguageResult)
    assert scope.table().columns.tolist() == ["depth", "quantity", "mean", "lo", "hi", "n"]
    assert scope.plot() is not None
    # at the last depth all three decoders read the model's own output
    for c in curves.values():
        assert torch.allclose(c.probs[-1], curves["logit"].probs[-1], atol=1e-5)
    back = LatentLanguageResult.load(scope.save(tmp_path / "scope"), model)
    assert back.decoder == scope.decoder
    assert back.table().equals(scope.table())
