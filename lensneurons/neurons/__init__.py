"""Neuron sets: which units of which layers belong to a group, with set algebra and views.

A :class:`NeuronSet` is a boolean mask ``[layer, unit]`` on a site. :class:`NeuronSets` maps
group names to sets and adds what a researcher looks at first: a group x layer count table, the
overlap between groups, a layer histogram, saving, and the papers' mask format
(``{group: [[indices of layer 0], [indices of layer 1], ...]}``).

Examples:
    >>> import torch, lensneurons as ln
    >>> mask = torch.zeros(2, 8, dtype=torch.bool); mask[1, [3, 5]] = True
    >>> fr = ln.NeuronSet.from_mask(mask)
    >>> len(fr), [idx.tolist() for idx in fr.indices]
    (2, [[], [3, 5]])
    >>> sets = ln.NeuronSets({"fr": fr, "de": ln.NeuronSet.from_indices([[3], []], width=8)})
    >>> sets.table().loc["fr"].tolist()  # layer 0, layer 1, total
    [0, 2, 2]
"""

from lensneurons.neurons.neuron_set import NeuronSet, check_shape, random_like
from lensneurons.neurons.neuron_sets import NeuronSets

__all__ = ["NeuronSet", "NeuronSets", "check_shape", "random_like"]
