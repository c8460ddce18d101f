"""CULNIG end to end on Gemma 3 270M with the shipped questions: set sizes and layers.

Run: ``LENSNEURONS_CACHE=... python scripts/culnig_gemma.py [n_items] [cultures...]``. A few
minutes on two CPU cores with the defaults (10 items of each kind for three cultures).
"""

from __future__ import annotations

import sys
import time

import lensneurons as ln
from lensneurons.corpora import culture_items


def main() -> None:
    """Score questions, control and country items; select; print sizes by layer."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    names = sys.argv[2:] or ["Japan", "Mexico", "France"]
    model = ln.models.load("gemma-3-270m")
    kinds = {"questions": culture_items(names), "control": culture_items(names, kind="control"),
             "countries": culture_items(names, kind="countries")}
    scores: dict[str, dict[str, ln.AttributionScores]] = {}
    for kind, items in kinds.items():
        scores[kind] = {}
        for c in names:
            start = time.perf_counter()
            scores[kind][c] = ln.attribution(model, items[c][:n], batch_size=5, progress=False,
                                             clamp_negative=kind == "control")
            print(f"{kind:9s} {c:7s} {n} items {time.perf_counter() - start:6.1f} s", flush=True)
    out = ln.culture_neurons(scores["questions"], scores["control"], scores["countries"])
    print(out.table().to_string())
    for site, ns in out.general.items():
        print("general", site, "per layer", ns.per_layer())
    for c in names:
        print("specific", c, "mlp per layer", out.specific["mlp"][c].per_layer())


if __name__ == "__main__":
    main()
