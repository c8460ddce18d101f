"""Build lensneurons/data/culture/questions.json from scripts/culture_questions_src.py.

The correct option's letter is drawn per item from a seeded RNG (md5 of the question), so the
file is reproducible and the letters are balanced. Run: ``python scripts/make_culture_data.py``.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import culture_questions_src as src

OUT = Path(__file__).resolve().parents[1] / "lensneurons" / "data" / "culture" / "questions.json"


def rng(text: str) -> random.Random:
    """A generator seeded by the md5 of ``text``."""
    return random.Random(int(hashlib.md5(text.encode()).hexdigest()[:8], 16))


def item(question: str, correct: str, wrong: list[str], **extra) -> dict:
    """One item with its options shuffled and the right letter."""
    options = [correct, *wrong]
    rng(question + correct).shuffle(options)
    return {**extra, "question": question, "options": options,
            "answer": "ABCD"[options.index(correct)]}


def main() -> None:
    """Write the JSON file."""
    cultures = {
        name: [item(q, a, w, topic=t) for t, q, a, w in items]
        for name, items in src.CULTURES.items()
    }
    pool = [*src.CULTURES, *src.EXTRA_COUNTRIES]
    countries = {}
    for name in src.CULTURES:
        rows = []
        for i, template in enumerate(src.COUNTRY_TEMPLATES):
            r = rng(f"{name}-{i}")
            wrong = r.sample([c for c in pool if c != name], 3)
            rows.append(item(src.COUNTRY_QUESTION, name, wrong,
                             passage=template.format(country=name)))
        countries[name] = rows
    data = {"format": 1, "description": "Cultural multiple-choice questions written for "
            "lensneurons (6 cultures x 40) and country-name control items.",
            "cultures": cultures, "countries": countries}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
