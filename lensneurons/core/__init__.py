"""The foundation every stage stands on: the model view, sites and their registry, checks,
persistence, the result convention and memory checks. It imports no other stage.
"""

#: The package's version (also in ``pyproject.toml``); every saved result records it.
__version__ = "0.1.0"
