"""Root pytest configuration, shared by tests/ and the docstring examples in lensneurons/."""

import os

import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
# The test models and the organism are tiny: thread synchronisation costs more than a second
# core gains (and much more on a shared machine).
torch.set_num_threads(1)
