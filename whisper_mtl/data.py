"""Everything between files on disk and a padded batch.

- Manifests: JSONL, one clip per line: ``{"audio": path, "text": str}`` plus optional ``"intensity"``
  (an external label that replaces the computed loudness target, e.g. a listener rating) and optional
  ``"duration"`` (s). Relative audio paths are relative to the manifest's folder. Other keys are kept
  out of the way (ignored), so manifests can carry notes such as a speaker id.
- Corpora as users have them on disk: LibriSpeech (``LibriSpeech/<split>/<speaker>/<chapter>/``) and a
  Common Voice release (``<lang>/{train,dev,test,validated}.tsv`` + ``clips/``) become the same `Clip`s.
- `SpeechDataset`: decodes lazily per item and measures the loudness target (dBFS or LUFS) of exactly
  the waveform the model will see, after optional gain augmentation.
- `filter_clips`: drops, before training, what would crash or mislead it (too long for the window,
  labels over the decoder's 448 positions, undefined target), printing a count per reason.
- `SpeechCollator`: pads waves to the model's window, returns real lengths, and builds labels the way
  transformers' Whisper expects them.

CLI: ``python -m whisper_mtl.data librispeech ROOT SPLIT OUT.jsonl`` (or ``common_voice``) writes a
manifest from a corpus on disk.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from whisper_mtl.audio import SAMPLE_RATE, AudioError, load_audio
from whisper_mtl.fileio import write_jsonl
from whisper_mtl.loudness import TARGETS, LoudnessError, measure

MAX_LABEL_TOKENS = 448  # Whisper's decoder positions (max_target_positions), prefix included
PEAK_CEILING_DBFS = -0.1  # gain augmentation never lifts a clip's peak above this (dBFS): no clipping
LABEL_PAD = -100  # ignored by cross-entropy
COMMON_VOICE_SPLITS = ("train", "dev", "test", "validated", "other", "invalidated")


@dataclass(frozen=True)
class Clip:
    """One utterance: audio path, transcript, optional external intensity label (replaces the measured
    target; its unit is the label's own), optional duration (s)."""

    audio: str
    text: str
    intensity: float | None = None
    duration: float | None = None


class ManifestError(ValueError):
    """A manifest or corpus file that cannot be read. Message: "<file>:<line>: <cause>" (or "<file>: <cause>")."""


# ---------------------------------------------------------------------------------------------------
# Manifests

def _number(value, key: str, where: str, positive: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ManifestError(f'{where}: "{key}" must be a finite number or null, got {value!r}')
    if positive and value <= 0:
        raise ManifestError(f'{where}: "{key}" must be > 0 s, got {value!r}')
    return float(value)


def read_manifest(path) -> list[Clip]:
    """Read and validate a JSONL manifest. Every line is checked; the first bad one raises ManifestError
    naming the file, the line number and the cause. Blank lines are skipped. Relative audio paths are
    resolved against the manifest's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read ({e})") from None
    clips = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise ManifestError(f"{where}: expected a JSON object, got {type(row).__name__}")
        audio, transcript = row.get("audio"), row.get("text")
        if not isinstance(audio, str) or not audio:
            raise ManifestError(f'{where}: "audio" must be a non-empty path string, got {audio!r}')
        if not isinstance(transcript, str):
            raise ManifestError(f'{where}: "text" must be a string, got {transcript!r}')
        audio_path = Path(audio).expanduser()
        if not audio_path.is_absolute():
            audio_path = path.parent / audio_path
        clips.append(Clip(
            audio=str(audio_path),
            text=transcript,
            intensity=_number(row.get("intensity"), "intensity", where),
            duration=_number(row.get("duration"), "duration", where, positive=True),
        ))
    if not clips:
        raise ManifestError(f"{path}: no clips (empty manifest)")
    return clips


def manifest_row(clip: Clip) -> dict:
    """One manifest line as a dict (optional fields only when set; the path as given)."""
    row = {"audio": str(clip.audio), "text": clip.text}
    if clip.intensity is not None:
        row["intensity"] = clip.intensity
    if clip.duration is not None:
        row["duration"] = clip.duration
    return row


def write_manifest(path, clips) -> None:
    """Write clips as JSONL, atomically (optional fields only when set). Paths are written as given."""
    write_jsonl(path, [manifest_row(clip) for clip in clips])


# ---------------------------------------------------------------------------------------------------
# Corpora on disk

def _split_dir(root: Path, split: str, corpus: str, marker: str) -> Path:
    """The first of root/split, root/<corpus>/split, root that looks like the split folder."""
    for candidate in (root / split, root / corpus / split):
        if candidate.is_dir():
            return candidate
    raise ManifestError(f"{root}: no {corpus} split {split!r} (looked for {root / split} and "
                        f"{root / corpus / split}){marker}")


def librispeech_clips(root, split: str, lowercase: bool = True) -> list[Clip]:
    """Clips of a LibriSpeech split in the official layout
    ``<root>/[LibriSpeech/]<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` + ``.flac``.

    LibriSpeech transcripts are upper case without punctuation; ``lowercase`` (default) lower-cases
    them: closer to the text Whisper was trained on and about half as many tokens. Word error rates
    are unaffected (scoring normalises case). Transcript lines whose .flac is missing are reported on
    stderr and left out. Sorted by utterance id."""
    root = Path(root)
    split_dir = _split_dir(root, split, "LibriSpeech", "")
    clips, missing = [], []
    for trans in sorted(split_dir.glob("*/*/*.trans.txt")):
        for number, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            utt, _, words = line.strip().partition(" ")
            if not words:
                raise ManifestError(f"{trans}:{number}: expected '<utterance-id> <TRANSCRIPT>', got {line!r}")
            audio = trans.parent / f"{utt}.flac"
            if not audio.exists():
                missing.append(str(audio))
                continue
            clips.append(Clip(audio=str(audio), text=words.lower() if lowercase else words))
    if missing:
        print(f"librispeech {split}: {len(missing)} transcript line(s) have no audio, left out "
              f"(first: {missing[0]})", file=sys.stderr)
    if not clips:
        raise ManifestError(f"{split_dir}: no LibriSpeech utterances found (*/*/*.trans.txt with .flac files)")
    return clips


def common_voice_clips(root, split: str) -> list[Clip]:
    """Clips of a Common Voice release folder ``<root>/{train,dev,test,validated,...}.tsv`` + ``clips/``
    (root is the language folder, e.g. ``cv-corpus-17.0/en``). Reads the ``path`` and ``sentence``
    columns; rows with an empty sentence are left out (counted on stderr). Audio is usually MP3, which
    soundfile decodes."""
    root = Path(root)
    if split not in COMMON_VOICE_SPLITS:
        raise ManifestError(f"{root}: unknown Common Voice split {split!r}; expected one of {COMMON_VOICE_SPLITS}")
    tsv = root / f"{split}.tsv"
    if not tsv.is_file():
        raise ManifestError(f"{tsv}: no such file (expected a Common Voice language folder with {split}.tsv and clips/)")
    clips, empty = [], 0
    with tsv.open(encoding="utf-8", newline="") as f:
        # QUOTE_NONE: sentences contain quote characters that are text, not CSV quoting.
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise ManifestError(f"{tsv}: empty file")
        for column in ("path", "sentence"):
            if column not in header:
                raise ManifestError(f"{tsv}:1: missing column {column!r} (header: {header})")
        i_path, i_text = header.index("path"), header.index("sentence")
        for number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < len(header):
                raise ManifestError(f"{tsv}:{number}: expected {len(header)} tab-separated fields, got {len(row)}")
            sentence = row[i_text].strip()
            if not sentence:
                empty += 1
                continue
            clips.append(Clip(audio=str(root / "clips" / row[i_path]), text=sentence))
    if empty:
        print(f"common voice {split}: {empty} row(s) with an empty sentence left out", file=sys.stderr)
    return clips


# ---------------------------------------------------------------------------------------------------
# Gain

def apply_gain(wave, gain_db: float):
    """wave scaled by gain_db dB (a Tensor or ndarray, same type and dtype back). Both loudness units are
    gain-equivariant: the RMS level and the integrated loudness move by exactly gain_db."""
    return wave * (10.0 ** (gain_db / 20.0))


def max_gain_db(wave, ceiling_dbfs: float = 0.0) -> float:
    """Headroom: the largest gain (dB) that keeps the peak at or below ceiling_dbfs. inf for silence."""
    peak = float(wave.abs().max()) if isinstance(wave, torch.Tensor) else float(np.max(np.abs(wave)))
    return math.inf if peak == 0.0 else ceiling_dbfs - 20.0 * math.log10(peak)


# ---------------------------------------------------------------------------------------------------
# Dataset

class SpeechDataset(torch.utils.data.Dataset):
    """Clips decoded lazily, one per item (memory does not grow with the corpus beyond the clip list).

    item = dict(wave=float32 Tensor[T] at 16 kHz, text=str, target=float in the target's unit (dBFS or
    LUFS) or the clip's external intensity label, path=str, gain_db=float dB applied).

    gain_db = G > 0 turns on gain augmentation: each item gets a gain drawn uniformly from [-G, G] dB,
    lowered if needed so the peak stays at or below PEAK_CEILING_DBFS, and its target moves by exactly
    that gain. The draw is a pure function of (seed, epoch, index): call set_epoch each epoch. G = 0
    (evaluation) leaves the audio untouched. External intensity labels are not in dB of the signal, so
    they cannot be combined with gain augmentation (ValueError).
    """

    def __init__(self, clips, target: str | None = "rms_dbfs", gain_db: float = 0.0, seed: int = 0):
        if target is not None and target not in TARGETS:
            raise ValueError(f"unknown loudness target {target!r}; expected one of {TARGETS}")
        if not (gain_db >= 0 and math.isfinite(gain_db)):
            raise ValueError(f"gain_db must be a finite number >= 0 dB, got {gain_db}")
        self.clips = list(clips)
        labelled = [c.audio for c in self.clips if c.intensity is not None]
        if gain_db > 0 and labelled:
            raise ValueError(f"gain augmentation needs measured dB targets, but {len(labelled)} clip(s) carry "
                             f"an external intensity label (first: {labelled[0]}); use gain_db=0")
        self.target, self.gain_db, self.seed, self.epoch = target, float(gain_db), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def gain_for(self, index: int, wave: torch.Tensor) -> float:
        """The augmentation gain (dB) for item `index` of the current epoch: uniform in ±gain_db, limited
        by the clip's headroom to PEAK_CEILING_DBFS."""
        if self.gain_db == 0:
            return 0.0
        draw = float(np.random.default_rng([self.seed, self.epoch, index]).uniform(-self.gain_db, self.gain_db))
        return min(draw, max_gain_db(wave, PEAK_CEILING_DBFS))

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        wave = load_audio(clip.audio)
        gain = self.gain_for(index, wave)
        if clip.intensity is not None:
            target = clip.intensity
        elif self.target is None:
            target = None
        else:
            try:
                # Measured before the gain and shifted by it: exact, since both units are gain-equivariant.
                target = measure(wave, self.target) + gain
            except LoudnessError as e:
                raise LoudnessError(f"{clip.audio}: {e}") from None
        if gain != 0.0:
            wave = apply_gain(wave, gain)
        return {"wave": wave, "text": clip.text, "target": target, "path": clip.audio, "gain_db": gain}


# ---------------------------------------------------------------------------------------------------
# Filtering

def text_token_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a transcript as Whisper was trained on it: one leading space, no special tokens."""
    # verbose=False: long transcripts are measured here on purpose, no "longer than 448" warning.
    return tokenizer.encode(" " + text.strip(), add_special_tokens=False, verbose=False)


def filter_clips(clips, tokenizer, window_samples: int, target: str | None, max_label_tokens: int = MAX_LABEL_TOKENS,
                 prefix_ids: list[int] | None = None, progress: bool = False, decode: bool = True,
                 verbose: bool = True) -> tuple[list[Clip], dict[str, int]]:
    """Leave out, before training, clips that cannot be trained on, and print a count per reason.

    Reasons: "unreadable audio", "longer than the window" (samples > window_samples),
    "transcript too long" (prefix + text tokens + eos > max_label_tokens decoder positions),
    "target undefined" (digital silence; LUFS on a clip under 0.4 s or fully gated).
    decode=True decodes every clip (exact lengths, catches silence and bad files); decode=False trusts
    manifest durations (or file headers) and cannot see silence. Kept clips get their duration (s) filled
    in. prefix_ids defaults to tokenizer.prefix_tokens (e.g. <|startoftranscript|><|notimestamps|>).
    Returns (kept clips, {reason: count}) with every reason present (0 when none); verbose prints the
    counts on stdout (each unreadable file is named on stderr either way)."""
    import soundfile as sf
    from tqdm import tqdm

    if prefix_ids is None:
        prefix_ids = list(tokenizer.prefix_tokens)
    counts = {"unreadable audio": 0, "longer than the window": 0, "transcript too long": 0, "target undefined": 0}
    kept = []
    for clip in tqdm(clips, desc="checking clips", unit="clip", disable=not progress, file=sys.stderr):
        # Labels are prefix[1:] + text + eos and the decoder input prepends <|startoftranscript|>.
        if len(prefix_ids) + len(text_token_ids(tokenizer, clip.text)) > max_label_tokens:
            counts["transcript too long"] += 1
            continue
        wave = None
        try:
            if decode:
                wave = load_audio(clip.audio)
                n_samples = wave.shape[0]
            elif clip.duration is not None:
                n_samples = round(clip.duration * SAMPLE_RATE)
            else:
                info = sf.info(clip.audio)
                n_samples = round(info.frames * SAMPLE_RATE / info.samplerate)
        except (AudioError, RuntimeError, OSError) as e:
            counts["unreadable audio"] += 1
            print(f"left out: {e}", file=sys.stderr)
            continue
        if n_samples > window_samples:
            counts["longer than the window"] += 1
            continue
        if clip.intensity is None and target is not None:
            try:
                if wave is not None:
                    measure(wave, target)
                elif target == "lufs" and n_samples < 0.4 * SAMPLE_RATE:
                    raise LoudnessError("shorter than 0.4 s")
            except LoudnessError:
                counts["target undefined"] += 1
                continue
        kept.append(Clip(clip.audio, clip.text, clip.intensity, round(n_samples / SAMPLE_RATE, 3)))
    dropped = sum(counts.values())
    if verbose:
        detail = ", ".join(f"{reason}: {n}" for reason, n in counts.items())
        print(f"filter_clips: kept {len(kept)} of {len(clips)} clips; left out {dropped} ({detail})")
    return kept, counts


# ---------------------------------------------------------------------------------------------------
# Collation

def label_ids(tokenizer, prefix_ids: list[int], text: str) -> list[int]:
    """Labels of one transcript: prefix_ids[1:] + text tokens + eos. The leading <|startoftranscript|> is
    dropped because transformers' Whisper shifts labels right and prepends decoder_start_token_id itself
    (keeping it would teach the model to emit it twice)."""
    return list(prefix_ids[1:]) + text_token_ids(tokenizer, text) + [tokenizer.eos_token_id]


class SpeechCollator:
    """Batches SpeechDataset items for WhisperMTL.

    Returns dict(waves=float32 [B, window_samples] zero-padded, lengths=int64 [B] real samples,
    labels=int64 [B, L] padded with -100 after each row's eos (by length, not by id: Whisper's pad id
    is its eos id), intensity=float32 [B] (None when items have no target), texts, paths).
    Log-mel features are computed later, on the model's device."""

    def __init__(self, tokenizer, prefix_ids: list[int], window_samples: int):
        sot = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
        if not prefix_ids or prefix_ids[0] != sot:
            raise ValueError(f"prefix_ids must start with <|startoftranscript|> ({sot}), got {prefix_ids}")
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer has no eos token")
        self.tokenizer, self.prefix_ids, self.window_samples = tokenizer, list(prefix_ids), int(window_samples)

    def __call__(self, items: list[dict]) -> dict:
        waves = torch.zeros(len(items), self.window_samples, dtype=torch.float32)
        lengths = torch.zeros(len(items), dtype=torch.int64)
        rows = []
        for b, item in enumerate(items):
            wave = item["wave"]
            if wave.shape[0] > self.window_samples:
                raise ValueError(f"{item['path']}: {wave.shape[0] / SAMPLE_RATE:.2f} s is longer than the model's "
                                 f"{self.window_samples / SAMPLE_RATE:.2f} s window (run filter_clips first)")
            waves[b, : wave.shape[0]] = wave
            lengths[b] = wave.shape[0]
            rows.append(label_ids(self.tokenizer, self.prefix_ids, item["text"]))
        labels = torch.full((len(rows), max(map(len, rows))), LABEL_PAD, dtype=torch.int64)
        for b, row in enumerate(rows):
            labels[b, : len(row)] = torch.tensor(row, dtype=torch.int64)
        targets = [item["target"] for item in items]
        intensity = None if any(t is None for t in targets) else torch.tensor(targets, dtype=torch.float32)
        return {"waves": waves, "lengths": lengths, "labels": labels, "intensity": intensity,
                "texts": [item["text"] for item in items], "paths": [item["path"] for item in items]}


def collate_speech(items: list[dict], tokenizer, prefix_ids: list[int], window_samples: int) -> dict:
    """Functional form of SpeechCollator."""
    return SpeechCollator(tokenizer, prefix_ids, window_samples)(items)


# ---------------------------------------------------------------------------------------------------
# CLI: corpus on disk -> manifest

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m whisper_mtl.data",
        description="Write a JSONL manifest (audio, text) from a corpus on disk. Example: "
                    "python -m whisper_mtl.data librispeech data/LibriSpeech dev-clean dev-clean.jsonl")
    parser.add_argument("corpus", choices=("librispeech", "common_voice"), help="layout of the corpus on disk")
    parser.add_argument("root", type=Path, help="LibriSpeech folder (or its parent) / Common Voice language folder")
    parser.add_argument("split", help="e.g. train-clean-100, dev-clean (LibriSpeech); train, dev, test (Common Voice)")
    parser.add_argument("out", type=Path, help="manifest to write (.jsonl); audio paths are written absolute")
    args = parser.parse_args(argv)
    try:
        reader = librispeech_clips if args.corpus == "librispeech" else common_voice_clips
        clips = reader(args.root, args.split)
        clips = [Clip(str(Path(c.audio).resolve()), c.text, c.intensity, c.duration) for c in clips]
        write_manifest(args.out, clips)
    except (ManifestError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"manifest": str(args.out), "clips": len(clips)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
