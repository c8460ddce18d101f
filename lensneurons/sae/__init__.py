"""Sparse autoencoders: SAELens-format SAEs, their latents as a site, a small trainer.

* :class:`SAE` reads and writes the SAELens on-disk format (``sae.py``);
* :func:`sae_site` registers SAEs as the site ``"sae:<name>"`` for ``collect``, ``lape`` and the
  intervention factories (``site.py``, ``hooks.py``);
* :func:`train_sae` trains a small ReLU (L1) or top-k SAE on a TL hook (``train.py``);
* the paper's own selection rule, over per-document counts, is
  :func:`lensneurons.detect.sae_lape.sae_lape` (``docs/methods/sae.md``);
* :data:`ORGANISM_SAE` is the folder of the shipped SAE on the organism's
  ``blocks.2.hook_resid_post``.

Examples:
    >>> import lensneurons as ln
    >>> ln.SAE.load(ln.sae.ORGANISM_SAE)
    SAE('organism-l2': blocks.2.hook_resid_post, 128 -> 1024, relu)
"""

from pathlib import Path

from lensneurons.sae.hooks import LatentHook, latent_writer
from lensneurons.sae.sae import SAE
from lensneurons.sae.site import SAESite, registered, sae_site
from lensneurons.sae.train import train_sae

#: The shipped SAE of the model organism (SAELens format).
ORGANISM_SAE = Path(__file__).resolve().parent.parent / "data" / "sae" / "organism-l2"

__all__ = ["ORGANISM_SAE", "SAE", "LatentHook", "SAESite", "latent_writer", "registered",
           "sae_site", "train_sae"]
