"""Transcripts with a loudness timeline for files, folders and long recordings.

The pipeline, per input: decode (`audio.load_audio`: any format soundfile reads, any rate, any channel
count -> mono 16 kHz) -> cut into windows of at most the model's window (30 s for Whisper), each cut placed
in the quietest stretch near the window's edge so words are not split -> windows judged silent by their
measured level skip the model -> the other windows, from all inputs together, go through
`WhisperMTL.predict` in batches (one encoder pass per batch feeds both the decoder and the intensity
head) -> one `FileResult` per input, with one `Segment` per window: text, predicted and measured loudness.

Inputs are streamed: a file is decoded when the batcher needs its windows and its result is yielded (in
input order) as soon as all its windows are done, so a folder of long recordings never sits in memory.
"""

from __future__ import annotations

import glob
import math
import os
import sys
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from .audio import SAMPLE_RATE, AudioError, load_audio
from .loudness import UNITS, LoudnessError, lufs, rms_dbfs

# Extensions searched for inside folders (case-insensitive); a file named explicitly is tried whatever its name.
AUDIO_EXTENSIONS = (
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
    ".au", ".snd", ".caf", ".w64", ".rf64", ".sph", ".voc",
)  # fmt: skip
GLOB_CHARS = "*?["

ENERGY_FRAME_SAMPLES = 320  # 20 ms frames for finding quiet cut points (one encoder frame)
# Token budget per window when none is given: fast speech is ~5 tokens/s, so a window that needs more than
# 10 tokens/s (+ 16 for punctuation, numbers) is looping; without a cap one looping window holds its whole
# batch to the 446-token limit.
MAX_TOKENS_PER_SECOND, MIN_TOKENS = 10.0, 16
# timestamp mode: a pass whose last timestamp leaves more than CONTINUE_MARGIN_S undecoded is continued from
# there; one that got less than MIN_PROGRESS_S in is not (no endless loop on a stuck window)
CONTINUE_MARGIN_S, MIN_PROGRESS_S = 2.0, 1.0
QUIET_MARGIN_DB = 10.0  # a frame within this many dB of the quietest frame near the edge counts as a pause
UNTRAINED_HEAD_NOTE = "intensity head untrained: no loudness prediction (fine-tune with train.py first)"


@dataclass(frozen=True)
class TranscribeOptions:
    """How inputs are windowed, batched, decoded and judged silent.

    batch_size: windows per `predict` call (from all inputs together). num_beams / max_new_tokens: decoding
    (max_new_tokens None = MAX_TOKENS_PER_SECOND per second of the batch's longest window). search_seconds: how far back from a window's edge (s) the cut looks
    for a pause. silence_dbfs: windows whose RMS level is below this (dBFS) are silence and skip the model.
    no_speech_threshold / logprob_threshold: Whisper's rule, a window whose no-speech probability is above
    the first and whose mean token log-probability is below the second yields empty text. timestamps:
    decode in Whisper's timestamp mode, the mode it was trained on for full windows (without it, tiny.en
    drops whole sentences from long windows).
    """

    batch_size: int = 8
    num_beams: int = 1
    max_new_tokens: int | None = None
    search_seconds: float = 5.0
    silence_dbfs: float = -70.0  # well below quiet speech (-42 dBFS peaks measure about -60 dBFS RMS)
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    timestamps: bool = True

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.search_seconds < 0:
            raise ValueError(f"search_seconds must be >= 0, got {self.search_seconds}")


@dataclass(frozen=True)
class Measured:
    """Loudness measured on a span of the 16 kHz mono signal: RMS level (dBFS) and BS.1770 integrated
    loudness (LUFS). A value is None when undefined, and `notes` then says why (keyed by "rms_dbfs"/"lufs")."""

    rms_dbfs: float | None
    lufs: float | None
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Segment:
    """One window of a file. start/end: s from the file's start. predicted: the head's loudness in the
    checkpoint target's unit (None when silent or the head is untrained). avg_logprob: mean token
    log-probability (None when the window skipped the model). silent: judged silence or non-speech."""

    start: float
    end: float
    text: str
    predicted: float | None
    measured: Measured
    avg_logprob: float | None
    no_speech_prob: float | None
    silent: bool


@dataclass(frozen=True)
class FileResult:
    """The transcript and loudness of one input, or `error` (one line) when it could not be processed.

    predicted: file-level loudness in `unit` combined from the windows (None with `predicted_note` when
    undefined); measured: loudness of the whole file; duration_s: s of audio.
    """

    path: str
    target: str
    duration_s: float | None = None
    text: str = ""
    predicted: float | None = None
    predicted_note: str | None = None
    measured: Measured | None = None
    segments: tuple[Segment, ...] = ()
    error: str | None = None

    @property
    def unit(self) -> str:
        return UNITS[self.target]


@dataclass(frozen=True)
class InputFile:
    """One input to transcribe: a path, or the reason a command-line argument yielded no file."""

    path: str
    error: str | None = None


# ---------------------------------------------------------------------------------------------- inputs
def _is_audio_name(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def _audio_under(folder: Path) -> list[Path]:
    """Audio files under folder, recursively, sorted; hidden files and folders (".*") are skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(root) / f for f in files if _is_audio_name(Path(f)))
    return sorted(found)


def collect_inputs(specs: Iterable[str]) -> list[InputFile]:
    """Expand command-line paths into input files, in the order given, each file once.

    A file is taken as is (soundfile decides whether it is audio); a folder is searched recursively for
    files with an audio extension (AUDIO_EXTENSIONS); a pattern with * ? [ is expanded with glob (** spans
    folders). A folder with no audio or a pattern matching nothing becomes an InputFile with an error; a
    path that does not exist is kept, so decoding reports it ("no such file").
    """
    out: list[InputFile] = []
    seen: set[str] = set()

    def add(path: Path | str, error: str | None = None):
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            out.append(InputFile(str(path), error))

    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = _audio_under(path)
            if not files:
                add(spec, f"no audio files in this folder (searched recursively for {', '.join(AUDIO_EXTENSIONS)})")
            for f in files:
                add(f)
        elif not path.exists() and any(c in spec for c in GLOB_CHARS):
            matches = sorted(glob.glob(spec, recursive=True))
            files = []
            for m in map(Path, matches):
                files.extend(_audio_under(m) if m.is_dir() else [m])
            if not files:
                add(spec, "no file matches this pattern")
            for f in files:
                add(f)
        else:
            add(spec)
    return out


# --------------------------------------------------------------------------------------------- windows
def plan_windows(wave: torch.Tensor | np.ndarray, window_samples: int, search_samples: int) -> list[tuple[int, int]]:
    """Cut a signal [T] into consecutive windows (start, end) in samples, each at most window_samples long.

    The windows cover [0, T) without gaps or overlaps. Each cut lies in the last search_samples before the
    window's edge: the centre of the longest run of quiet 20 ms frames there (quiet = within
    QUIET_MARGIN_DB of the quietest frame in that stretch; ties go to the later run), so a pause is cut
    rather than a word. search_samples is capped at half the window.
    """
    x = torch.as_tensor(wave).detach().reshape(-1).to("cpu", torch.float64)
    total = x.numel()
    search = min(int(search_samples), window_samples // 2)
    frame = ENERGY_FRAME_SAMPLES
    windows, start = [], 0
    while total - start > window_samples:
        edge = start + window_samples
        zone_start = edge - (search // frame) * frame  # whole frames ending exactly at the edge
        if zone_start >= edge:
            cut = edge
        else:
            power = x[zone_start:edge].reshape(-1, frame).square().mean(dim=1).clamp_min(1e-10)  # [frames]
            db = 10.0 * power.log10()
            quiet = (db <= db.min() + QUIET_MARGIN_DB).tolist()
            best_len, best_mid, run_start = 0, len(quiet), None
            for i, q in enumerate(quiet + [False]):
                if q and run_start is None:
                    run_start = i
                elif not q and run_start is not None:
                    if i - run_start >= best_len:  # >= : later runs win ties
                        best_len, best_mid = i - run_start, (run_start + i) // 2
                    run_start = None
            cut = zone_start + best_mid * frame
        windows.append((start, cut))
        start = cut
    windows.append((start, total))
    return windows


# ---------------------------------------------------------------------------------------------- levels
def measure_span(wave: torch.Tensor) -> Measured:
    """RMS level (dBFS) and integrated loudness (LUFS) of a mono 16 kHz span; undefined values get a note."""
    values, notes = {}, {}
    for name, fn in (("rms_dbfs", rms_dbfs), ("lufs", lufs)):
        try:
            values[name] = fn(wave)
        except LoudnessError as e:
            values[name], notes[name] = None, str(e)
    return Measured(values["rms_dbfs"], values["lufs"], notes)


def combine_levels(levels: list[float | None], durations: list[float], target: str) -> float | None:
    """File-level loudness (dB, unit of `target`) from per-window levels and their durations (s).

    rms_dbfs: exact power average over the whole file, a None window (silence) counting as zero power
    for its duration. lufs: duration-weighted power average over the windows that have a level, since
    BS.1770's gates drop silence (an approximation: integrated loudness gates 400 ms blocks, not windows).
    None when no window has a level.
    """
    pairs = [(lv, d) for lv, d in zip(levels, durations) if lv is not None and d > 0]
    if not pairs:
        return None
    power = sum(d * 10.0 ** (lv / 10.0) for lv, d in pairs)
    total = sum(durations) if target == "rms_dbfs" else sum(d for _, d in pairs)
    return 10.0 * math.log10(power / total)


# ------------------------------------------------------------------------------------------ transcribe
@dataclass
class _Window:
    start: int  # samples
    end: int
    measured: Measured
    silent_by_level: bool
    parts: list = field(default_factory=list)  # whisper_mtl.model.Prediction per decoding pass, in time order


@dataclass
class _Job:
    path: str
    error: str | None = None
    wave: torch.Tensor | None = None
    windows: list[_Window] = field(default_factory=list)
    n_waiting: int = 0  # windows still to be decoded


def _duration_hint(item: InputFile) -> float:
    """Seconds of audio in a file from its header (for the progress bar only); 0 when unknown."""
    if item.error:
        return 0.0
    try:
        import soundfile

        return max(float(soundfile.info(item.path).duration), 0.0)
    except Exception:  # an unreadable file is reported by load_audio
        return 0.0


def _open(item: InputFile, window_samples: int, options: TranscribeOptions) -> _Job:
    """Decode one input and plan its windows (measured, and flagged when silent by level)."""
    if item.error:
        return _Job(item.path, error=item.error)
    try:
        wave = load_audio(item.path)
    except AudioError as e:
        return _Job(item.path, error=e.cause)
    except OSError as e:  # e.g. permission denied
        return _Job(item.path, error=" ".join(str(e).split()))
    job = _Job(item.path, wave=wave)
    search = round(options.search_seconds * SAMPLE_RATE)
    for start, end in plan_windows(wave, window_samples, search):
        measured = measure_span(wave[start:end])
        silent = measured.rms_dbfs is None or measured.rms_dbfs < options.silence_dbfs
        job.windows.append(_Window(start, end, measured, silent))
    job.n_waiting = sum(not w.silent_by_level for w in job.windows)
    return job


def _decode(model, batch: list[tuple[_Job, _Window, int]], options: TranscribeOptions) -> list[tuple[_Job, _Window, int]]:
    """Run one batch of (job, window, offset) through the model's one-encoder-pass predict, decoding each
    window from `offset` samples on. Returns the continuations still to decode: in timestamp mode a pass
    that stops (last timestamp) well before the window's end leaves speech undecoded, so the rest of the
    window is queued again from that timestamp, as openai/whisper's long-form loop seeks."""
    device = model.device
    longest_s = max(w.end - w.start - offset for _, w, offset in batch) / SAMPLE_RATE
    max_new_tokens = options.max_new_tokens or MIN_TOKENS + math.ceil(MAX_TOKENS_PER_SECOND * longest_s)
    waves = torch.zeros(len(batch), model.window_samples)
    lengths = torch.empty(len(batch), dtype=torch.long)
    for b, (job, w, offset) in enumerate(batch):
        waves[b, : w.end - w.start - offset] = job.wave[w.start + offset : w.end]
        lengths[b] = w.end - w.start - offset
    predictions = model.predict(
        waves.to(device), lengths.to(device), num_beams=options.num_beams, max_new_tokens=max_new_tokens,
        no_speech=True,  # Whisper's P(no speech) for the non-speech rule (one extra decoder step per batch)
        timestamps=options.timestamps,
    )
    continuations = []
    for (job, w, offset), p, n in zip(batch, predictions, lengths.tolist()):
        w.parts.append(p)
        done = round((p.timestamp_end or 0.0) * SAMPLE_RATE)
        if p.text and MIN_PROGRESS_S * SAMPLE_RATE <= done < n - CONTINUE_MARGIN_S * SAMPLE_RATE:
            continuations.append((job, w, offset + done))
        else:
            job.n_waiting -= 1
    return continuations


def _is_non_speech(p, options: TranscribeOptions) -> bool:
    """Whisper's no-speech rule: the no-speech token is likely and the text itself is not confident."""
    nsp = getattr(p, "no_speech_prob", None)
    return nsp is not None and nsp > options.no_speech_threshold and p.avg_logprob < options.logprob_threshold


def _joined(parts: list):
    """One Prediction for a window decoded in several passes: texts joined, log-probs token-weighted,
    loudness and P(no speech) from the first pass (its encoder saw the whole window). None if undecoded."""
    if len(parts) <= 1:
        return parts[0] if parts else None
    weights = [len(q.tokens) + 1 for q in parts]  # + end-of-text, counted in each avg_logprob
    avg = sum(q.avg_logprob * k for q, k in zip(parts, weights)) / sum(weights)
    return replace(parts[0], text=" ".join(q.text for q in parts if q.text), avg_logprob=avg,
                   tokens=[t for q in parts for t in q.tokens], timestamp_end=None)


def _finish(job: _Job, target: str, head_trained: bool, options: TranscribeOptions) -> FileResult:
    """Turn a fully decoded job into its FileResult (and drop its audio)."""
    if job.error is not None:
        return FileResult(job.path, target, error=job.error)
    segments = []
    for w in job.windows:
        p = _joined(w.parts)
        silent = w.silent_by_level or _is_non_speech(p, options)
        predicted = None
        if head_trained and not silent and p.intensity_db is not None:
            predicted = float(p.intensity_db)
        segments.append(
            Segment(
                start=w.start / SAMPLE_RATE,
                end=w.end / SAMPLE_RATE,
                text="" if silent else p.text.strip(),
                predicted=predicted,
                measured=w.measured,
                avg_logprob=None if p is None else float(p.avg_logprob),
                no_speech_prob=None if p is None or p.no_speech_prob is None else float(p.no_speech_prob),
                silent=silent,
            )
        )
    if head_trained:
        durations = [s.end - s.start for s in segments]
        predicted = combine_levels([s.predicted for s in segments], durations, target)
        note = None if predicted is not None else "every window is silence: no loudness to predict"
    else:
        predicted, note = None, UNTRAINED_HEAD_NOTE
    wave, job.wave = job.wave, None
    return FileResult(
        path=job.path,
        target=target,
        duration_s=wave.numel() / SAMPLE_RATE,
        text=" ".join(s.text for s in segments if s.text),
        predicted=predicted,
        predicted_note=note,
        measured=measure_span(wave),
        segments=tuple(segments),
    )


def transcribe(
    model, inputs: Iterable[InputFile | str], options: TranscribeOptions = TranscribeOptions(), progress: bool = True
) -> Iterator[FileResult]:
    """Transcribe inputs with `model` (a WhisperMTL), yielding one FileResult per input, in input order.

    Windows from all inputs share batches of options.batch_size. A file that cannot be read yields a
    FileResult with `error` and the others go on. progress: a tqdm bar on stderr (in seconds of audio)
    when there is more than one window to decode.
    """
    items = [i if isinstance(i, InputFile) else InputFile(str(i)) for i in inputs]
    target, head_trained = model.config.target, bool(model.config.head_trained)
    window_samples = model.window_samples
    total_s = sum(_duration_hint(i) for i in items)
    show = progress and (len(items) > 1 or total_s * SAMPLE_RATE > window_samples)
    bar = tqdm(total=round(total_s, 1), unit="s", desc="transcribing", file=sys.stderr, disable=not show, leave=False)

    pending: deque[_Job] = deque()  # opened, result not yet yielded (input order)
    queue: list[tuple[_Job, _Window, int]] = []  # (job, window, offset in samples) waiting for the model

    def run(batch):
        later = _decode(model, batch, options)
        queue.extend(later)
        left = lambda items: sum(w.end - w.start - offset for _, w, offset in items)  # noqa: E731
        bar.update(round((left(batch) - left(later)) / SAMPLE_RATE, 1))

    def ready():
        while pending and pending[0].n_waiting == 0:
            job = pending.popleft()
            silent_s = sum(w.end - w.start for w in job.windows if w.silent_by_level) / SAMPLE_RATE
            bar.update(round(silent_s, 1))
            yield _finish(job, target, head_trained, options)

    try:
        for item in items:
            job = _open(item, window_samples, options)
            pending.append(job)
            queue.extend((job, w, 0) for w in job.windows if not w.silent_by_level)
            while len(queue) >= options.batch_size:
                batch = queue[: options.batch_size]
                del queue[: options.batch_size]
                run(batch)
            yield from ready()
        while queue:
            batch = queue[: options.batch_size]
            del queue[: options.batch_size]
            run(batch)
        yield from ready()
    finally:
        bar.close()
