"""Copy the home page's gallery figures out of the committed, executed notebooks.

    python scripts/gallery.py            # write docs/img/gallery/*.png
    python scripts/gallery.py --check    # exit 1 if a gallery file differs from its notebook

Each gallery figure is the image/png output of one code cell: the cell that carries the tag
named in :data:`GALLERY`, in the notebook named there (cell tags survive edits that move cells;
a missing tag, or a cell without exactly one image, is an error). The bytes are written as the
notebook holds them, so the gallery is exactly what the notebook pages show: run this after
``make notebooks-refresh``. tests/test_notebooks.py checks that the two agree.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "docs" / "img" / "gallery"

#: gallery file -> (notebook, tag of the cell whose figure it is)
GALLERY: dict[str, tuple[str, str]] = {
    # Tang et al.'s experiment: Δ NLL when each language's LAPE set is switched off
    "tang_diagonal.png": ("03_tang_on_gemma.ipynb", "gallery:tang_diagonal"),
    # Wendler et al.'s latent-language curves, three non-English pairs, logit lens
    "pivot_curves.png": ("04_does_gemma_think_in_english.ipynb", "gallery:pivot_curves"),
}


def figure(notebook: str, tag: str) -> bytes:
    """The PNG bytes of the one image output of the cell tagged ``tag`` in ``notebook``."""
    cells = json.loads((NOTEBOOKS / notebook).read_text(encoding="utf-8"))["cells"]
    tagged = [c for c in cells if tag in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise SystemExit(f"{notebook}: {len(tagged)} cells tagged {tag!r}, expected 1")
    images = [o["data"]["image/png"] for o in tagged[0].get("outputs", [])
              if "image/png" in o.get("data", {})]
    if len(images) != 1:
        raise SystemExit(f"{notebook}, cell tagged {tag!r}: {len(images)} images, expected 1 "
                         "(execute the notebook: make notebooks-refresh)")
    data = images[0]
    return base64.b64decode("".join(data) if isinstance(data, list) else data)


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) every gallery file; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args(argv)
    stale = []
    for name, (notebook, tag) in GALLERY.items():
        png = figure(notebook, tag)
        path = OUT / name
        if args.check:
            if not path.is_file() or path.read_bytes() != png:
                stale.append(name)
            continue
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        print(f"{path.relative_to(ROOT)}: {len(png):,} bytes from {notebook} [{tag}]")
    if stale:
        print(f"stale gallery files (run python scripts/gallery.py): {', '.join(stale)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
