"""Corpus-level ASR metrics in percent and loudness-prediction errors in dB.

WER/CER are corpus-level (total edits over total reference words/characters, not a mean of per-clip
rates) and returned as PERCENTAGES: 4.7 means 4.7 %, and 470.0 would mean 4.7 edits per reference word.
"""

from __future__ import annotations

import math

import jiwer
import numpy as np

from .text import normalize


def asr_metrics(references: list[str], hypotheses: list[str], language: str | None = "en", tokenizer=None) -> dict:
    """Corpus WER/CER of hypotheses against references, all in percent.

    Returns {"wer": % on normalised text, "wer_raw": % on the text as written (orthographic: case and
    punctuation count), "cer": % characters on normalised text, "n": utterances, "ref_words": normalised
    reference words, "substitutions"/"deletions"/"insertions": normalised word edits}.
    Normalisation is `text.normalize(language, tokenizer)`. Raises ValueError on mismatched lengths, an
    empty corpus, or references with no words at all.
    """
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no utterances to score")
    norm_refs = [normalize(r, language, tokenizer) for r in references]
    norm_hyps = [normalize(h, language, tokenizer) for h in hypotheses]
    if not any(r.split() for r in norm_refs):
        raise ValueError("every reference is empty after normalisation: WER is undefined")
    words = jiwer.process_words(norm_refs, norm_hyps)
    raw_refs = [" ".join(r.split()) for r in references]
    raw_hyps = [" ".join(h.split()) for h in hypotheses]
    return {
        "wer": 100.0 * words.wer,
        "wer_raw": 100.0 * jiwer.process_words(raw_refs, raw_hyps).wer,
        "cer": 100.0 * jiwer.process_characters(norm_refs, norm_hyps).cer,
        "n": len(references),
        "ref_words": words.hits + words.substitutions + words.deletions,
        "substitutions": words.substitutions,
        "deletions": words.deletions,
        "insertions": words.insertions,
    }


def intensity_metrics(targets, predictions) -> dict:
    """Errors of predicted loudness against targets, both in dB (dBFS or LUFS, the same unit).

    Returns {"rmse": dB, "mae": dB, "r": Pearson correlation or None when there are fewer than 2 items or
    either side has zero variance, "n": items}. Raises ValueError on mismatched lengths, no items, or
    non-finite values.
    """
    t = np.asarray(list(targets), dtype=np.float64)
    p = np.asarray(list(predictions), dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"{t.size} targets but {p.size} predictions")
    if t.size == 0:
        raise ValueError("no items to score")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError("targets and predictions must be finite dB values (found NaN or infinity)")
    err = p - t
    r = None
    if t.size >= 2 and np.ptp(t) > 0 and np.ptp(p) > 0:  # a constant side has no correlation
        dt, dp = t - t.mean(), p - p.mean()
        r = float(np.clip(float(dt @ dp) / math.sqrt(float(dt @ dt) * float(dp @ dp)), -1.0, 1.0))
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r": r,
        "n": int(t.size),
    }
