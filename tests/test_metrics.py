"""whisper_mtl.text and whisper_mtl.metrics against hand-computed values."""

import math
from types import SimpleNamespace

import pytest

from whisper_mtl.metrics import asr_metrics, intensity_metrics
from whisper_mtl.text import is_english, normalize


def test_english_normaliser():
    assert normalize("Mr. Smith won't pay $20, uh, OK?") == "mister smith will not pay $20 ok"
    assert normalize("Twenty-five  apples.") == "25 apples"
    assert normalize("Hello [noise] (cough) world!") == "hello world"
    assert normalize("Café") == "cafe"  # the English normaliser drops diacritics


def test_spelling_map_comes_from_the_tokenizer():
    tokenizer = SimpleNamespace(english_spelling_normalizer={"colour": "color"})
    assert normalize("The colour.", tokenizer=tokenizer) == "the color"
    assert normalize("The colour.") == "the colour"  # no map without a tokenizer that has one
    assert normalize("The colour.", tokenizer=SimpleNamespace(english_spelling_normalizer=None)) == "the colour"


def test_other_languages_use_the_basic_normaliser():
    assert normalize("Ça, c'est L'ÉTÉ!", language="fr") == "ça c est l été"
    assert normalize("Mr. Smith", language="de") == "mr smith"  # no English rules
    assert is_english("en") and is_english("English") and is_english("en-US") and is_english(None)
    assert is_english("eng") and not is_english("fr") and not is_english("es")


def test_wer_is_corpus_level_and_in_percent():
    refs = ["the cat sat on the mat", "hello world"]
    hyps = ["the cat sit on mat", "hello there world"]
    m = asr_metrics(refs, hyps)
    # utterance 1: sat->sit (S) + "the" deleted (D); utterance 2: "there" inserted (I); 8 reference words
    assert m["wer"] == pytest.approx(100 * 3 / 8)
    assert (m["substitutions"], m["deletions"], m["insertions"], m["ref_words"], m["n"]) == (1, 1, 1, 8, 2)
    # not the mean of per-utterance rates (which would be (2/6 + 1/2) / 2 = 41.7 %)
    assert m["wer"] != pytest.approx(100 * (2 / 6 + 1 / 2) / 2)


def test_wer_can_exceed_100_percent_and_is_not_a_fraction():
    m = asr_metrics(["hi"], ["hi hi hi hi"])
    assert m["wer"] == pytest.approx(300.0)
    assert asr_metrics(["the quick brown fox"], ["the quick brown box"])["wer"] == pytest.approx(25.0)


def test_raw_wer_counts_case_and_punctuation_normalised_does_not():
    m = asr_metrics(["Hello, world!"], ["hello world"])
    assert m["wer"] == 0.0
    assert m["wer_raw"] == pytest.approx(100.0)  # "Hello," != "hello" and "world!" != "world"
    assert m["cer"] == 0.0
    m = asr_metrics(["Mr. Smith won't go."], ["mister smith will not go"])
    # raw: Mr.->mister, Smith->smith, won't->will, go.->go (4 S) + "not" (1 I) over 4 words
    assert m["wer"] == 0.0 and m["wer_raw"] == pytest.approx(100 * 5 / 4)


def test_cer_in_percent():
    # normalised "the cat" has 7 characters (space included); one substitution
    assert asr_metrics(["The cat."], ["the bat"])["cer"] == pytest.approx(100 / 7)
    # the basic normaliser keeps diacritics, so é vs e is a character error in French
    m = asr_metrics(["été"], ["ete"], language="fr")
    assert m["cer"] == pytest.approx(100 * 2 / 3) and m["wer"] == pytest.approx(100.0)


def test_asr_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        asr_metrics(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no utterances"):
        asr_metrics([], [])
    with pytest.raises(ValueError, match="empty after normalisation"):
        asr_metrics(["uh", "(laughs) um."], ["yes", "no"])
    # one empty reference among others is fine: its hypothesis words count as insertions
    assert asr_metrics(["a b", ""], ["a b", "c"])["wer"] == pytest.approx(50.0)


def test_intensity_metrics_hand_computed():
    targets = [-20.0, -30.0, -40.0]
    predictions = [-22.0, -29.0, -40.0]
    m = intensity_metrics(targets, predictions)
    # errors -2, +1, 0 dB
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert m["mae"] == pytest.approx(1.0)
    # centred targets (10, 0, -10), centred predictions (25/3, 4/3, -29/3): r = 180 / sqrt(200 * 494/3)
    assert m["r"] == pytest.approx(180 / math.sqrt(200 * 494 / 3))
    assert m["n"] == 3
    assert intensity_metrics([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])["r"] == pytest.approx(-1.0)


def test_intensity_metrics_undefined_correlation_and_errors():
    assert intensity_metrics([-20.0], [-25.0]) == {"rmse": 5.0, "mae": 5.0, "r": None, "n": 1}
    assert intensity_metrics([-20.0, -30.0], [-25.0, -25.0])["r"] is None  # constant predictions
    assert intensity_metrics([0.1, 0.1, 0.1], [1.0, 2.0, 3.0])["r"] is None  # constant targets
    with pytest.raises(ValueError):
        intensity_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        intensity_metrics([], [])
    with pytest.raises(ValueError, match="finite"):
        intensity_metrics([1.0, float("nan")], [1.0, 2.0])
