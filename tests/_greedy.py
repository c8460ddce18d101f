"""The reference every generation test compares with: a greedy loop over the full forward pass.

``greedy_loop`` recomputes the whole sequence at every step (no cache of any kind) and takes the
argmax of the last position's logits. Where the top two logits are within ``TIE`` (relative) of
each other, two correct float paths may pick different tokens, so ``same_as_forward`` compares a
generation only up to the first such step.
"""

from __future__ import annotations

import torch

from lensneurons.evaluate import decoding_mode, generate

TIE = 1e-4


def greedy_loop(model, prompt, n, hooks=()):
    """Ids of ``n`` greedy steps of ``prompt`` under ``hooks``, and the first near-tie step."""
    tokens = model.to_tokens(prompt)
    tie = n
    with torch.inference_mode(), model.hooks(fwd_hooks=list(hooks)):
        for step in range(n):
            logits = model(tokens, return_type="logits")[0, -1].float()
            top = logits.topk(2).values
            if tie == n and top[0] - top[1] < TIE * max(1.0, float(top[0].abs())):
                tie = step
            tokens = torch.cat([tokens, logits.argmax().view(1, 1).to(tokens.device)], dim=1)
    return tokens[0, -n:], tie


def assert_same_as_forward(model, prompts, n, hooks=(), **options):
    """``generate`` gives, for every prompt, the greedy loop's tokens (decoded) up to a tie."""
    compared = 0
    for prompt in prompts:
        ids, tie = greedy_loop(model, prompt, n, hooks)
        if tie == 0:
            continue
        [[text]] = generate(model, [prompt], hooks, max_new_tokens=tie, stop_at_eos=False,
                            **options)
        expected = model.tokenizer.decode(ids[:tie].tolist(), skip_special_tokens=True)
        assert text == expected, (prompt, decoding_mode(model, options.get("use_past_kv_cache")))
        compared += tie
    assert compared >= n, f"only {compared} tokens compared: every prompt hit a near-tie"
