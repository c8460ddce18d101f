"""Intervene: neuron sets or directions in, TransformerLens ``fwd_hooks`` out; nothing runs a model.

Examples:
    >>> import torch, lensneurons as ln
    >>> mask = torch.zeros(4, 512, dtype=torch.bool); mask[3, :8] = True
    >>> hooks = ln.deactivate(ln.NeuronSet.from_mask(mask))
    >>> hooks[-1][0]  # (hook_name, hook_fn) pairs; the first checks the model's shape
    'blocks.3.mlp.hook_post'
"""

from lensneurons.intervene.amplification import amplification_values, amplify_to
from lensneurons.intervene.directions import DirectionHook, add_direction
from lensneurons.intervene.hooks import (
    NeuronHook,
    add_activation,
    amplify,
    deactivate,
    set_activation,
    steer,
)

__all__ = ["DirectionHook", "NeuronHook", "add_activation", "add_direction",
           "amplification_values", "amplify", "amplify_to", "deactivate", "set_activation", "steer"]
