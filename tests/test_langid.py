"""lensneurons.corpora.langid: offline language identification of short texts."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from lensneurons.corpora import langid
from lensneurons.corpora.sample import load_sample
from lensneurons.errors import UnknownLanguageError

LANGS = ("en", "de", "fr", "es", "pt", "it", "ru", "uk", "el", "tr", "vi", "ja", "ko", "zh")

# Two everyday sentences per language, written for these tests.
SENTENCES = {
    "en": ["The children are playing in the garden while their parents cook dinner.",
           "Tomorrow we will take the train to visit our grandmother in the mountains."],
    "de": ["Die Kinder spielen im Garten, während ihre Eltern das Abendessen kochen.",
           "Morgen fahren wir mit dem Zug zu unserer Großmutter in die Berge."],
    "fr": ["Les enfants jouent dans le jardin pendant que leurs parents préparent le dîner.",
           "Demain, nous prendrons le train pour rendre visite à notre grand-mère."],
    "es": ["Los niños juegan en el jardín mientras sus padres preparan la cena.",
           "Mañana tomaremos el tren para visitar a nuestra abuela en las montañas."],
    "pt": ["As crianças estão a brincar no jardim enquanto os pais fazem o jantar.",
           "Amanhã vamos apanhar o comboio para visitar a nossa avó nas montanhas."],
    "it": ["I bambini giocano in giardino mentre i loro genitori preparano la cena.",
           "Domani prenderemo il treno per andare a trovare la nonna in montagna."],
    "ru": ["Дети играют в саду, пока их родители готовят ужин.",
           "Завтра мы поедем на поезде к бабушке в горы."],
    "uk": ["Діти граються в саду, поки їхні батьки готують вечерю.",
           "Завтра ми поїдемо потягом до бабусі в гори."],
    "el": ["Τα παιδιά παίζουν στον κήπο ενώ οι γονείς τους ετοιμάζουν το δείπνο.",
           "Αύριο θα πάρουμε το τρένο για να επισκεφτούμε τη γιαγιά μας στα βουνά."],
    "tr": ["Çocuklar bahçede oynarken ebeveynleri akşam yemeğini hazırlıyor.",
           "Yarın dağlardaki büyükannemizi ziyaret etmek için trene bineceğiz."],
    "vi": ["Bọn trẻ đang chơi trong vườn trong khi bố mẹ chúng nấu bữa tối.",
           "Ngày mai chúng tôi sẽ đi tàu lên núi thăm bà ngoại."],
    "ja": ["子供たちは庭で遊んでいて、両親は夕食を作っています。",
           "明日は電車で山に住んでいる祖母に会いに行きます。"],
    "ko": ["아이들이 정원에서 노는 동안 부모님은 저녁을 준비하고 있습니다.",
           "내일 우리는 기차를 타고 산에 계신 할머니를 뵈러 갑니다."],
    "zh": ["孩子们在花园里玩耍，他们的父母正在做晚饭。",
           "明天我们要坐火车去山里看望奶奶。"],
}


@pytest.mark.parametrize("lang", LANGS)
def test_clear_sentences_of_every_language(lang):
    assert langid.identify(SENTENCES[lang]) == [lang, lang]
    assert langid.identify(SENTENCES[lang], languages=LANGS) == [lang, lang]


def test_held_out_sample_sentences():
    heldout = load_sample(split="heldout")
    for lang, texts in heldout.items():
        found = langid.identify(texts)
        assert sum(f == lang for f in found) >= len(texts) - 1, (lang, found)


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "ab", "a b", "12345", "3.14 + 2.71",
                                  "!!! ???", "🙂🙂🙂🙂"])
def test_unknown_for_empty_short_or_letterless(text):
    assert langid.identify([text]) == [langid.UNKNOWN]
    assert langid.probability([text], "en").tolist() == [0.0]


def test_min_chars_sets_the_shortest_identified_text():
    assert langid.identify(["Bonjour"]) == ["fr"]
    assert langid.identify(["Bonjour"], min_chars=8) == [langid.UNKNOWN]
    assert langid.identify(["Merci beaucoup"], min_chars=13) == ["fr"]  # spaces do not count
    assert langid.identify(["Merci beaucoup"], min_chars=14) == [langid.UNKNOWN]


def test_newlines_inside_a_generation():
    assert langid.identify(["Bonjour à tous.\n\nComment allez-vous aujourd'hui ?"]) == ["fr"]


@pytest.mark.parametrize(("code", "expected"), [
    ("en", "en"), ("EN", "en"), (" fr ", "fr"), ("zh_CN", "zh"), ("zh-Hans", "zh"),
    ("zh-TW", "zh"), ("pt_BR", "pt"), ("pt-PT", "pt"), ("de_DE.UTF-8", "de"),
    ("sr@latin", "sr"), ("__label__fr", "fr"), ("eng", "en"), ("fra", "fr"), ("fre", "fr"),
    ("deu", "de"), ("cmn", "zh"), ("zho", "zh"), ("ukr", "uk"), ("ell", "el"), ("jpn", "ja"),
    ("nb", "no"), ("iw", "he"), ("yue", "yue"), ("ceb", "ceb"), ("unknown", "unknown"),
])
def test_normalize(code, expected):
    assert langid.normalize(code) == expected


def test_supported_languages():
    known = langid.supported()
    assert isinstance(known, frozenset) and len(known) == 176
    assert set(LANGS) <= known
    assert all(langid.normalize(code) == code for code in known)
    assert langid.UNKNOWN not in known


def test_check_language():
    assert langid.check_language("pt_BR") == "pt"
    assert langid.check_language("zh-Hant") == "zh"
    assert langid.check_language("cmn") == "zh"
    with pytest.raises(UnknownLanguageError, match=r"'xx'.*Known codes: af, als"):
        langid.check_language("xx")
    with pytest.raises(UnknownLanguageError):
        langid.check_language(langid.UNKNOWN)


def test_restriction_changes_answers_and_does_not_leak():
    uk = SENTENCES["uk"][0]
    assert langid.identify([uk]) == ["uk"]
    assert langid.identify([uk], languages=["ru", "en"]) == ["ru"]
    assert langid.identify([uk]) == ["uk"]  # the next unrestricted call is unaffected
    assert langid.identify([uk], languages=["ru", "uk"]) == ["uk"]
    assert langid.identify([uk], languages=["ru", "en"]) == ["ru"]


def test_restricted_answers_stay_in_the_set():
    texts = [t for lang in LANGS for t in SENTENCES[lang]]
    found = langid.identify(texts, languages=["de", "nl", "ja"])
    assert set(found) <= {"de", "nl", "ja", langid.UNKNOWN}
    assert found[2:4] == ["de", "de"] and found[-6:-4] == ["ja", "ja"]


def test_text_clearly_in_no_candidate_is_unknown():
    """Russian within {es, pt}: every candidate is below the model's 1e-5 floor."""
    ru = SENTENCES["ru"]
    assert langid.identify(ru, languages=["es", "pt"]) == [langid.UNKNOWN] * 2
    assert langid.probability(ru, "pt", languages=["es", "pt"]).tolist() == [0.0, 0.0]
    assert langid.identify(ru, languages=["es", "pt", "uk"]) == ["uk", "uk"]


def test_restriction_accepts_any_spelling():
    texts = SENTENCES["pt"] + SENTENCES["es"]
    assert langid.identify(texts, languages=["pt_BR", "es-ES"]) == ["pt", "pt", "es", "es"]


def test_restriction_to_close_pair_helps_short_texts():
    """Cut to 3 words, held-out es and pt sentences are read at least as well within {es, pt}."""
    heldout = load_sample(["es", "pt"], split="heldout")
    short = {lang: [" ".join(t.split()[:3]) for t in texts] for lang, texts in heldout.items()}
    for lang, texts in short.items():
        free = sum(f == lang for f in langid.identify(texts))
        pair = sum(f == lang for f in langid.identify(texts, languages=["es", "pt"]))
        assert pair >= free and pair >= 0.7 * len(texts), (lang, free, pair)


def test_probability_sums_to_one_and_orders_like_identify():
    texts = [SENTENCES[lang][0] for lang in LANGS] + ["ok"]
    restrict = ["es", "pt", "it", "fr"]
    table = np.stack([langid.probability(texts, lang, languages=restrict) for lang in restrict])
    assert table.dtype == np.float64 and table.shape == (4, len(texts))
    found = langid.identify(texts, languages=restrict)
    assert found[2:6] == ["fr", "es", "pt", "it"] and found[-1] == langid.UNKNOWN
    for column, answer in zip(table.T, found):
        if answer == langid.UNKNOWN:  # too short, or in none of the four languages
            assert (column == 0.0).all()
        else:
            assert np.isclose(column.sum(), 1.0) and restrict[column.argmax()] == answer
    everything = sum(langid.probability(texts[:3], lang) for lang in langid.supported())
    assert np.allclose(everything, 1.0)


def test_probability_of_the_right_language_is_high():
    for lang in LANGS:
        right = langid.probability(SENTENCES[lang], lang)
        assert (right > 0.5).all(), (lang, right)
        other = "en" if lang != "en" else "fr"
        assert (langid.probability(SENTENCES[lang], other) < right).all()
    fr = langid.probability(["Je pense, donc je suis."], "fr")
    assert 0.9 < fr[0] <= 1.0


def test_probability_shrinks_with_a_restriction_that_excludes_the_answer():
    ru = langid.probability(SENTENCES["uk"], "ru")
    ru_within = langid.probability(SENTENCES["uk"], "ru", languages=["ru", "en"])
    assert (ru < 0.2).all() and (ru_within > 0.9).all()


def test_batch_equals_one_by_one():
    texts = [t for lang in LANGS for t in SENTENCES[lang]] + ["", "ok", "Hallo"]
    texts = texts + texts[:5]  # repeated texts, as greedy generations give
    assert langid.identify(texts) == [langid.identify([t])[0] for t in texts]
    for restrict in (None, ["ru", "uk", "en"]):
        batch = langid.identify(texts, languages=restrict)
        assert batch == [langid.identify([t], languages=restrict)[0] for t in texts]
        probs = langid.probability(texts, "en", languages=restrict)
        single = [langid.probability([t], "en", languages=restrict)[0] for t in texts]
        assert probs.tolist() == single


def test_empty_input():
    assert langid.identify([]) == []
    empty = langid.probability([], "fr")
    assert empty.shape == (0,) and empty.dtype == np.float64


def test_runs_offline_on_the_shipped_model(monkeypatch):
    """A fresh detector identifies text with every network connection refused."""

    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    langid._detector.cache_clear()
    try:
        assert langid.identify(SENTENCES["fr"]) == ["fr", "fr"]
        assert langid.probability(SENTENCES["fr"], "fr").min() > 0.5
    finally:
        langid._detector.cache_clear()
