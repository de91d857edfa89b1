"""Batched evaluation of a WhisperMTL: word/character error rates and intensity errors on a list of clips.

One encoder pass per batch, shared by generation and the intensity head (``WhisperMTL.predict``). Clips
are sorted by length so a batch holds clips of similar duration; the order of the rows in the result
follows the input order, so batching changes nothing but speed.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field

import soundfile
import torch
from tqdm import tqdm

from whisper_mtl.audio import SAMPLE_RATE, AudioError, load_audio, pad_or_trim
from whisper_mtl.loudness import UNITS, LoudnessError, measure
from whisper_mtl.metrics import asr_metrics, intensity_metrics

UNTRAINED_HEAD_NOTE = "intensity head untrained: intensity metrics are null (fine-tune with train.py first)"


@dataclass(frozen=True)
class EvalResult:
    """Corpus-level scores of one evaluation.

    wer, wer_raw, cer: % (normalised, orthographic, normalised characters); intensity_*: dB of ``target``
    (rmse, mae) and Pearson r, None when the head is untrained or fewer than 2 clips have a measurable
    target; samples_per_s: clips evaluated per second of wall time (decoding audio included).
    rows: one dict per evaluated clip, in input order (path, reference, hypothesis, target, predicted,
    avg_logprob, duration_s); skipped: one "<path>: <cause>" line per clip that was not evaluated.
    """

    n: int
    n_skipped: int
    wer: float
    wer_raw: float
    cer: float
    intensity_rmse: float | None
    intensity_mae: float | None
    intensity_r: float | None
    target: str
    samples_per_s: float
    rows: list[dict] = field(repr=False)
    skipped: list[str] = field(repr=False)
    note: str | None = None

    def summary(self) -> dict:
        """The scores as a JSON-ready dict (no per-clip rows), with the intensity unit."""
        out = {k: v for k, v in asdict(self).items() if k not in ("rows", "skipped", "note")}
        out["unit"] = UNITS[self.target]
        if self.note:
            out["note"] = self.note
        return out


def clip_seconds(clip) -> float:
    """Duration used only to sort clips into batches (s): the manifest's, else the file header's; 0 when
    unreadable (decoding reports the real cause later)."""
    if clip.duration is not None:
        return float(clip.duration)
    try:
        return float(soundfile.info(clip.audio).duration)
    except Exception:  # undecodable: load_audio reports the real cause later
        return 0.0


def _batches(order: list[int], batch_size: int):
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def evaluate_model(
    model,
    clips: list,
    batch_size: int = 8,
    num_beams: int = 1,
    target: str | None = None,
    progress: bool = True,
    max_new_tokens: int | None = None,
) -> EvalResult:
    """Transcribe ``clips`` (data.Clip) in batches and score transcripts and intensity predictions.

    The reference intensity of a clip is its external label (``Clip.intensity``) when the manifest has one,
    as in training, else measured on the decoded 16 kHz mono audio the model hears
    (``loudness.measure(wave, target)``, dB of ``target``: dBFS or LUFS). ``target`` defaults to the model's
    own (``model.config.target``). With an untrained head (``config.head_trained`` False) rows carry no
    prediction and the intensity scores are None, with a ``note``. Clips that fail to
    decode, are longer than the model's window or are empty are listed on stderr and skipped. Clips
    whose loudness cannot be measured (digital silence; < 0.4 s for LUFS) are scored for ASR only.
    Raises ValueError when no clip could be evaluated.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    target = target or model.config.target
    if target not in UNITS:
        raise ValueError(f"unknown intensity target {target!r}; expected one of {sorted(UNITS)}")
    if target != model.config.target and model.config.head_trained:
        print(f"warning: the model's head predicts {model.config.target}, evaluating against {target}",
              file=sys.stderr)
    window = model.window_samples
    head_trained = bool(model.config.head_trained)
    # Longest first: a batch that would run out of memory does so at once, and the bar's rate settles.
    order = sorted(range(len(clips)), key=lambda i: -clip_seconds(clips[i]))
    rows: dict[int, dict] = {}
    skipped: list[str] = []
    # Restored module by module afterwards: a caller may keep parts in eval mode (a frozen encoder).
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    start = time.perf_counter()
    bar = tqdm(total=len(clips), desc="evaluate", unit="clip", disable=not progress, file=sys.stderr)
    try:
        for batch in _batches(order, batch_size):
            waves, kept = [], []
            for i in batch:
                clip = clips[i]
                try:
                    wave = load_audio(clip.audio)
                    if wave.numel() > window:
                        raise AudioError(clip.audio, f"{wave.numel() / SAMPLE_RATE:.1f} s is longer than the "
                                                     f"model's {window / SAMPLE_RATE:.0f} s window")
                except AudioError as err:
                    skipped.append(str(err))
                    print(f"skipped {err}", file=sys.stderr)
                    continue
                waves.append(wave)
                kept.append(i)
            bar.update(len(batch) - len(kept))
            if not kept:
                continue
            lengths = torch.tensor([w.numel() for w in waves], dtype=torch.long)
            padded = torch.stack([pad_or_trim(w, window) for w in waves])
            preds = model.predict(padded.to(model.device), lengths.to(model.device),
                                  num_beams=num_beams, max_new_tokens=max_new_tokens)
            for i, wave, pred in zip(kept, waves, preds):
                reference_db = clips[i].intensity  # an external label wins, as in training (data.SpeechDataset)
                if reference_db is None:
                    try:
                        reference_db = float(measure(wave, target))
                    except LoudnessError:
                        reference_db = None
                rows[i] = {
                    "path": clips[i].audio,
                    "reference": clips[i].text,
                    "hypothesis": pred.text,
                    "target": reference_db,
                    "predicted": pred.intensity_db if head_trained else None,  # an untrained head means nothing
                    "avg_logprob": pred.avg_logprob,
                    "duration_s": wave.numel() / SAMPLE_RATE,
                }
            bar.update(len(kept))
    finally:
        bar.close()
        for module, training in modes:
            module.training = training
    elapsed = time.perf_counter() - start
    if not rows:
        raise ValueError(f"no clip could be evaluated ({len(skipped)} of {len(clips)} skipped)")

    ordered = [rows[i] for i in sorted(rows)]
    language = getattr(model, "language", None) or "en"
    asr = asr_metrics([r["reference"] for r in ordered], [r["hypothesis"] for r in ordered], language=language,
                      tokenizer=getattr(model, "tokenizer", None))  # its spelling map, as Whisper's normaliser uses
    note = None
    intensity = {"rmse": None, "mae": None, "r": None}
    if not head_trained:
        note = UNTRAINED_HEAD_NOTE
    else:
        scored = [r for r in ordered if r["target"] is not None and r["predicted"] is not None]
        if scored:
            intensity = intensity_metrics([r["target"] for r in scored], [r["predicted"] for r in scored])
        if len(scored) < len(ordered):
            note = f"{len(ordered) - len(scored)} clips without a measurable {target} are left out of intensity metrics"
    return EvalResult(
        n=len(ordered),
        n_skipped=len(skipped),
        wer=asr["wer"],
        wer_raw=asr["wer_raw"],
        cer=asr["cer"],
        intensity_rmse=intensity["rmse"],
        intensity_mae=intensity["mae"],
        intensity_r=intensity["r"],
        target=target,
        samples_per_s=len(ordered) / elapsed if elapsed > 0 else math.inf,
        rows=ordered,
        skipped=skipped,
        note=note,
    )
