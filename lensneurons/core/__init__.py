"""The foundation under every stage: model view, sites, checks, persistence, results.

It imports no stage above it (only ``lensneurons.errors``).
"""

#: The package's version (also in ``pyproject.toml``); every saved result records it.
__version__ = "0.1.0"
