"""Text normalisation for WER: the normalisers Whisper's authors used, from transformers.

English: `EnglishTextNormalizer` (lower case, no punctuation, contractions expanded, numbers spelt as
digits, fillers like "uh"/"um" dropped, British spellings mapped to American when the checkpoint ships
that map as normalizer.json). Any other language: `BasicTextNormalizer` (lower case, brackets and
punctuation removed, diacritics kept).
"""

from __future__ import annotations

from functools import lru_cache

from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

ENGLISH = ("en", "eng", "english")


def is_english(language: str | None) -> bool:
    """True for "en", "eng", "english", "en-US", "en_GB" (any case); None counts as English (English-only models)."""
    if language is None:
        return True
    language = language.strip().lower()
    return language in ENGLISH or language.startswith(("en-", "en_"))


@lru_cache(maxsize=1)
def _basic() -> BasicTextNormalizer:
    return BasicTextNormalizer()


@lru_cache(maxsize=1)
def _english_without_spelling_map() -> EnglishTextNormalizer:
    return EnglishTextNormalizer({})


_with_spelling: dict[int, tuple[dict, EnglishTextNormalizer]] = {}  # id(map) -> (map kept alive, normaliser)


def _english(tokenizer) -> EnglishTextNormalizer:
    spelling = getattr(tokenizer, "english_spelling_normalizer", None) if tokenizer is not None else None
    if not spelling:
        return _english_without_spelling_map()
    if id(spelling) not in _with_spelling:  # built once per map: it has ~1700 entries
        _with_spelling[id(spelling)] = (spelling, EnglishTextNormalizer(spelling))
    return _with_spelling[id(spelling)][1]


def normalize(text: str, language: str | None = "en", tokenizer=None) -> str:
    """Normalise `text` for WER/CER scoring; returns words separated by single spaces, stripped.

    language: "en" (default, also "english"/"en-US"/None) uses Whisper's English normaliser with the
    spelling map of `tokenizer` (a transformers WhisperTokenizer) when it has one; any other language
    uses Whisper's basic normaliser.
    """
    normalizer = _english(tokenizer) if is_english(language) else _basic()
    return normalizer(text).strip()
