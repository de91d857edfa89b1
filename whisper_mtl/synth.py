"""A synthetic English speech corpus made with eSpeak NG: exact transcripts, varied voices, known levels.

The offline demo and the tests need speech whose words are known exactly and whose level varies widely.
eSpeak NG comes with the pip package ``espeakng-loader`` (libespeak-ng + its data, 104 voice variants),
called here through ctypes, so ``pip install -r requirements.txt`` is the whole set-up.

Sentences come from a small grammar over a few hundred words. Train and test sentences use disjoint
sentence templates (and no transcript is shared), so the test split measures transcription of new word
sequences, not recall of memorised sentences. Each clip gets its own accent, voice variant, rate, pitch,
pitch range and word gap, optional background noise, and a recording gain that puts its peak anywhere
between -42 and -1 dBFS (so the measured RMS level spans about 50 dB and the file never clips).

Determinism: eSpeak NG keeps internal state between utterances (pitch flutter, echo buffers), so each
fixed-size shard of clips is synthesised in a fresh worker process; everything else is drawn from
per-clip generators seeded by (seed, index). The same (n, seed, test_fraction) therefore gives
byte-identical FLAC files and manifests on any machine with any number of workers.

CLI: ``python -m whisper_mtl.synth OUT --n 1000 --seed 0``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing as mp
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tqdm import tqdm

from whisper_mtl.audio import SAMPLE_RATE
from whisper_mtl.data import Clip, apply_gain, manifest_row, max_gain_db
from whisper_mtl.fileio import write_jsonl

ESPEAK_SAMPLE_RATE = 22_050  # Hz, fixed by eSpeak NG
SHARD_SIZE = 16  # clips per fresh worker process (eSpeak state is reset between shards only)
PEAK_DBFS_RANGE = (-42.0, -1.0)  # recording gain: where each clip's peak lands (dBFS)
RATE_WPM = (130, 200)  # speaking rate, words per minute (eSpeak default 175)
NOISE_PROBABILITY = 0.35  # share of clips with background noise
NOISE_BELOW_PEAK_DB = (38.0, 58.0)  # noise RMS this far below the speech peak: light noise
MULTI_SENTENCE_MAX_S = 27.0  # estimated length cap of a several-sentence clip (s): well inside Whisper's 30 s
SENTENCE_PAUSE_S = 0.5  # eSpeak's pause after a full stop, s (for that estimate)
ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")

# ---------------------------------------------------------------------------------------------------
# The grammar. Words are written the way they are spoken (numbers as words) with American spelling,
# which is what Whisper's English normaliser produces too.

NAMES = (
    "Anna", "Peter", "Maria", "James", "Laura", "David", "Sarah", "Thomas", "Emma", "Daniel", "Lucy",
    "Oliver", "Grace", "Henry", "Alice", "Samuel", "Clara", "Martin", "Helen", "Robert", "Nora", "Victor",
    "Julia", "Simon", "Rose", "Edward", "Molly", "George", "Ruth", "Frank", "Ella", "Jack",
)
PEOPLE = (
    "teacher", "doctor", "farmer", "driver", "baker", "painter", "student", "neighbor", "nurse", "pilot",
    "sailor", "singer", "waiter", "lawyer", "engineer", "gardener", "builder", "writer", "captain",
    "stranger", "visitor", "shopkeeper", "librarian", "mechanic", "fisherman", "old man", "young woman",
    "little boy", "little girl", "postman",
)
ANIMALS = ("dog", "cat", "horse", "bird", "rabbit", "goat", "duck", "fox", "cow", "pony", "puppy", "kitten")
PLACES = (
    "station", "market", "library", "garden", "kitchen", "river", "bridge", "village", "harbor", "museum",
    "school", "hospital", "office", "bakery", "park", "forest", "beach", "island", "church", "hotel",
    "airport", "factory", "farm", "castle", "theater", "restaurant", "post office", "town square",
    "hill", "lake", "valley", "corner shop",
)
THINGS = (
    "box", "letter", "book", "basket", "bottle", "chair", "table", "lamp", "window", "door", "coat", "hat",
    "bag", "key", "map", "ticket", "cup", "plate", "bicycle", "boat", "car", "phone", "clock", "camera",
    "newspaper", "umbrella", "blanket", "candle", "apple", "jacket", "parcel", "ladder", "bucket", "kettle",
    "guitar", "piano", "painting", "envelope", "suitcase", "notebook",
)
# Regular plurals of THINGS that read naturally after a number.
PLURALS = (
    "boxes", "letters", "books", "baskets", "bottles", "chairs", "tables", "lamps", "coats", "hats", "bags",
    "keys", "maps", "tickets", "cups", "plates", "bicycles", "boats", "clocks", "candles", "apples",
    "jackets", "parcels", "buckets", "envelopes", "notebooks", "eggs", "stones", "flowers", "shells",
    "pencils", "coins", "cookies", "potatoes", "oranges", "sandwiches",
)
ADJECTIVES = (
    "old", "young", "small", "large", "quiet", "busy", "bright", "dark", "warm", "cold", "heavy", "light",
    "clean", "empty", "narrow", "wide", "famous", "friendly", "tired", "careful", "green", "red", "blue",
    "yellow", "wooden", "broken", "new", "strange", "beautiful", "simple", "long", "short", "happy",
    "gentle", "brave", "clever", "hungry", "noisy", "tiny", "golden", "silver", "soft", "dusty", "shiny",
)
VERBS_PAST = (
    "carried", "painted", "opened", "closed", "found", "lost", "bought", "sold", "cleaned", "moved",
    "fixed", "borrowed", "dropped", "washed", "watched", "noticed", "packed", "counted", "wrapped",
    "repaired", "hid", "brought", "picked up", "put down", "forgot", "gave away",
)
VERBS_BASE = (
    "carry", "paint", "open", "close", "find", "buy", "sell", "clean", "move", "fix", "borrow", "wash",
    "pack", "count", "wrap", "repair", "bring", "pick up", "check", "deliver",
)
MOTION_PAST = ("walked", "drove", "ran", "cycled", "hurried", "wandered", "rode", "raced", "strolled")
TIMES = (
    "yesterday", "this morning", "last night", "on Monday", "on Tuesday", "on Wednesday", "on Thursday",
    "on Friday", "on Saturday", "on Sunday", "in the afternoon", "before dinner", "after lunch",
    "every evening", "at noon", "last summer", "in the winter", "early in the morning", "late at night",
    "next week", "tomorrow",
)
WEATHER = ("rain", "snow", "storm", "wind", "fog", "thunder", "hail")
FEELINGS = ("happy", "tired", "surprised", "worried", "excited", "nervous", "proud", "calm", "curious")
COLORS = ("red", "blue", "green", "yellow", "white", "black", "brown", "orange", "purple", "gray")
FOODS = ("soup", "bread", "cheese", "tea", "coffee", "rice", "fish", "cake", "pie", "salad", "jam", "honey")

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0 <= n < 1000 in words, the way it is said: 342 -> 'three hundred and forty two'."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words handles 0..999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))


def _count(rng: np.random.Generator) -> str:
    """A count of things as spoken: mostly small numbers, sometimes hundreds."""
    n = int(rng.integers(2, 30)) if rng.random() < 0.7 else int(rng.integers(30, 1000))
    return number_words(n)


def _clock(rng: np.random.Generator) -> str:
    hour = number_words(int(rng.integers(1, 13)))
    minute = int(rng.choice([0, 15, 30, 45, 10, 20, 40, 50]))
    return f"{hour} o'clock" if minute == 0 else f"{hour} {number_words(minute)}"


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    return words[int(rng.integers(len(words)))]


def _sentence_case(phrase: str) -> str:
    return phrase[:1].upper() + phrase[1:]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _a(rng, words):
    w = _pick(rng, words)
    return f"{_article(w)} {w}"


# Each template is a function of a generator. TRAIN and TEST use different sentence shapes.
TRAIN_TEMPLATES = (
    lambda r: f"The {_pick(r, ADJECTIVES)} {_pick(r, PEOPLE)} {_pick(r, VERBS_PAST)} {_a(r, THINGS)} "
              f"at the {_pick(r, PLACES)} {_pick(r, TIMES)}.",
    lambda r: f"{_pick(r, NAMES)} {_pick(r, VERBS_PAST)} {_count(r)} {_pick(r, PLURALS)} {_pick(r, TIMES)}.",
    lambda r: f"{_sentence_case(_pick(r, TIMES))}, the {_pick(r, PEOPLE)} {_pick(r, MOTION_PAST)} to the "
              f"{_pick(r, PLACES)} with {_pick(r, NAMES)}.",
    lambda r: f"My {_pick(r, ANIMALS)} likes to sleep under the {_pick(r, ADJECTIVES)} {_pick(r, THINGS)}.",
    lambda r: f"We need {_count(r)} {_pick(r, PLURALS)} and some {_pick(r, FOODS)} for the trip to the "
              f"{_pick(r, PLACES)}.",
    lambda r: f"{_pick(r, NAMES)} said that the {_pick(r, PLACES)} was too {_pick(r, ADJECTIVES)} "
              f"{_pick(r, TIMES)}.",
    lambda r: f"Please {_pick(r, VERBS_BASE)} the {_pick(r, COLORS)} {_pick(r, THINGS)} before "
              f"{_clock(r)}.",
    lambda r: f"The train to the {_pick(r, PLACES)} leaves at {_clock(r)}, so {_pick(r, NAMES)} must "
              f"hurry.",
    lambda r: f"After the {_pick(r, WEATHER)}, the {_pick(r, ANIMALS)} ran across the "
              f"{_pick(r, ADJECTIVES)} {_pick(r, PLACES)}.",
    lambda r: f"{_pick(r, NAMES)} and {_pick(r, NAMES)} ate {_pick(r, FOODS)} at the "
              f"{_pick(r, PLACES)} {_pick(r, TIMES)}.",
    lambda r: f"I think the {_pick(r, PEOPLE)} was {_pick(r, FEELINGS)} when the {_pick(r, THINGS)} "
              f"{_pick(r, ('broke', 'fell', 'vanished', 'arrived'))}.",
    lambda r: f"There were {_count(r)} people waiting outside the {_pick(r, PLACES)} {_pick(r, TIMES)}.",
)
TEST_TEMPLATES = (
    lambda r: f"Did {_pick(r, NAMES)} remember to bring the {_pick(r, ADJECTIVES)} {_pick(r, THINGS)} to "
              f"the {_pick(r, PLACES)}?",
    lambda r: f"When the {_pick(r, WEATHER)} started, the {_pick(r, PEOPLE)} {_pick(r, MOTION_PAST)} back "
              f"to the {_pick(r, PLACES)}.",
    lambda r: f"There are {_count(r)} {_pick(r, PLURALS)} on the {_pick(r, COLORS)} table near the "
              f"{_pick(r, PLACES)}.",
    lambda r: f"{_pick(r, NAMES)} felt {_pick(r, FEELINGS)} because the {_pick(r, ANIMALS)} "
              f"{_pick(r, VERBS_PAST)} the {_pick(r, THINGS)}.",
    lambda r: f"Could you {_pick(r, VERBS_BASE)} {_count(r)} {_pick(r, PLURALS)} for the "
              f"{_pick(r, PEOPLE)} {_pick(r, TIMES)}?",
    lambda r: f"The {_pick(r, FOODS)} at the {_pick(r, ADJECTIVES)} {_pick(r, PLACES)} costs "
              f"{_count(r)} cents.",
)


def make_sentence(rng: np.random.Generator, split: str) -> str:
    """One sentence from the train or test grammar."""
    templates = TEST_TEMPLATES if split == "test" else TRAIN_TEMPLATES
    return templates[int(rng.integers(len(templates)))](rng)


# ---------------------------------------------------------------------------------------------------
# eSpeak NG through ctypes.

_ESPEAK_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: espeak_Synth returns when the audio is done
_ESPEAK_INIT_DONT_EXIT = 0x8000
_ESPEAK_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM = {"rate": 1, "pitch": 3, "range": 4, "wordgap": 7}
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _ESpeak:
    """The process-wide eSpeak NG engine (it has global state: one per process)."""

    def __init__(self):
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        rate = lib.espeak_Initialize(_ESPEAK_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(),
                                     _ESPEAK_INIT_DONT_EXIT)
        if rate != ESPEAK_SAMPLE_RATE:
            raise RuntimeError(f"{espeakng_loader.get_library_path()}: eSpeak NG failed to initialise "
                               f"(returned {rate})")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: ctypes must not free it
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = continue

    def say(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, word_gap: int,
            seed: int) -> np.ndarray:
        """Synthesise ``text``; returns int16 samples at 22 050 Hz."""
        self._chunks = []
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"eSpeak NG has no voice {voice!r}")
        for name, value in (("rate", rate), ("pitch", pitch), ("range", pitch_range), ("wordgap", word_gap)):
            self.lib.espeak_SetParameter(_PARAM[name], value, 0)
        self.lib.espeak_ng_SetRandSeed(seed)
        data = text.encode("utf-8") + b"\0"
        if self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None) != 0:
            raise RuntimeError(f"eSpeak NG failed on {text!r}")
        self.lib.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


def voice_variants() -> tuple[str, ...]:
    """The voice variants shipped with espeakng-loader (e.g. 'f3', 'klatt2', 'whisper'), sorted."""
    import espeakng_loader

    return tuple(sorted(p.name for p in (Path(espeakng_loader.get_data_path()) / "voices" / "!v").iterdir()))


# ---------------------------------------------------------------------------------------------------
# The corpus.

@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines one synthetic clip."""

    index: int
    split: str  # "train" | "test"
    text: str
    voice: str  # eSpeak voice name: accent + variant, e.g. "en-us+f3"
    rate: int  # words per minute
    pitch: int  # 0..100 (eSpeak scale, 50 = voice default)
    pitch_range: int  # 0..100
    word_gap: int  # extra pause between words, units of 10 ms
    lead_s: float  # silence before the speech, s
    tail_s: float  # silence after the speech, s
    noise_below_peak_db: float | None  # background noise RMS this many dB below the speech peak; None = clean
    noise_colour: str  # "white" | "brown"
    peak_dbfs: float  # peak level of the written clip, dBFS
    audio: str  # path relative to the corpus folder


def _estimated_seconds(text: str, rate_wpm: int, word_gap: int) -> float:
    """Rough spoken length of `text` in eSpeak at `rate_wpm` with `word_gap` (10 ms units), s."""
    words = len(text.split())
    return words * (60.0 / rate_wpm + word_gap * 0.01) + SENTENCE_PAUSE_S * sum(text.count(c) for c in ".?")


def plan_corpus(n: int, seed: int = 0, test_fraction: float = 0.2, train_sentences: int = 1) -> list[ClipSpec]:
    """Draw every clip's sentence, voice, prosody, noise and gain. Pure: the same arguments give the same
    plan. The last round(n * test_fraction) clips form the test split (at least one of each when n >= 2).
    train_sentences > 1: each training clip reads 1..train_sentences sentences in one voice (fewer when
    they would not fit in MULTI_SENTENCE_MAX_S), like the full 30 s windows Whisper was trained on; test
    clips always read one."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if train_sentences < 1:
        raise ValueError(f"train_sentences must be >= 1, got {train_sentences}")
    n_test = round(n * test_fraction)
    if n >= 2 and test_fraction > 0:
        n_test = min(max(n_test, 1), n - 1)
    variants = voice_variants()
    # Stratified peak levels: the corpus spans the whole range even when n is small.
    lo, hi = PEAK_DBFS_RANGE
    order = np.random.default_rng([seed, 1]).permutation(n)
    jitter = np.random.default_rng([seed, 2]).random(n)
    peaks = lo + (order + jitter) / n * (hi - lo)
    text_rng = np.random.default_rng([seed, 3])
    seen: set[str] = set()
    specs = []
    for i in range(n):
        split = "test" if i >= n - n_test else "train"
        k = 1 if split == "test" or train_sentences == 1 else int(text_rng.integers(1, train_sentences + 1))
        sentences = []
        for _ in range(k):
            for _ in range(1000):
                text = make_sentence(text_rng, split)
                if text not in seen:
                    break
            else:
                raise RuntimeError(f"the grammar ran out of distinct {split} sentences at clip {i}")
            seen.add(text)
            sentences.append(text)
        r = np.random.default_rng([seed, 4, i])
        noisy = r.random() < NOISE_PROBABILITY
        voice = f"{_pick(r, ACCENTS)}+{_pick(r, variants)}"
        rate = int(r.integers(RATE_WPM[0], RATE_WPM[1] + 1))
        pitch, pitch_range = int(r.integers(20, 81)), int(r.integers(20, 91))
        word_gap = int(r.integers(1, 11)) if r.random() < 0.3 else 0
        while len(sentences) > 1 and _estimated_seconds(" ".join(sentences), rate, word_gap) > MULTI_SENTENCE_MAX_S:
            sentences.pop()
        specs.append(ClipSpec(
            index=i, split=split, text=" ".join(sentences),
            voice=voice, rate=rate, pitch=pitch, pitch_range=pitch_range, word_gap=word_gap,
            lead_s=round(float(r.uniform(0.05, 0.5)), 3),
            tail_s=round(float(r.uniform(0.05, 0.5)), 3),
            noise_below_peak_db=round(float(r.uniform(*NOISE_BELOW_PEAK_DB)), 2) if noisy else None,
            noise_colour="white" if r.random() < 0.5 else "brown",
            peak_dbfs=round(float(peaks[i]), 2),
            audio=f"clips/{i:05d}.flac",
        ))
    return specs


def render_clip(engine: _ESpeak, spec: ClipSpec, seed: int) -> np.ndarray:
    """Synthesise one clip: float32 mono at SAMPLE_RATE, peak at spec.peak_dbfs."""
    raw = engine.say(spec.text, spec.voice, spec.rate, spec.pitch, spec.pitch_range, spec.word_gap,
                     seed=seed * 100_003 + spec.index)
    speech = resample_poly(raw.astype(np.float64) / 32768.0, SAMPLE_RATE, ESPEAK_SAMPLE_RATE)
    lead, tail = (np.zeros(round(s * SAMPLE_RATE)) for s in (spec.lead_s, spec.tail_s))
    wave = np.concatenate([lead, speech, tail])
    if spec.noise_below_peak_db is not None:
        r = np.random.default_rng([seed, 5, spec.index])
        noise = r.standard_normal(len(wave))
        if spec.noise_colour == "brown":  # integrated white noise, made zero-mean: a low rumble
            noise = np.cumsum(noise)
            noise -= np.linspace(noise[0], noise[-1], len(noise))
        noise *= np.abs(speech).max() * 10 ** (-spec.noise_below_peak_db / 20) / noise.std()
        wave = wave + noise
    # Recording gain: peak to spec.peak_dbfs, i.e. spec.peak_dbfs dB below the full-scale headroom.
    wave = apply_gain(wave, max_gain_db(wave) + spec.peak_dbfs)
    return wave.astype(np.float32)


def _render_shard(job: tuple[list[ClipSpec], int, str]) -> list[tuple[int, int]]:
    """Worker: render and write a shard of clips in this (fresh) process. Returns (index, samples)."""
    specs, seed, out_dir = job
    engine = _ESpeak()
    done = []
    for spec in specs:
        wave = render_clip(engine, spec, seed)
        path = Path(out_dir) / spec.audio
        sf.write(path, wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        done.append((spec.index, len(wave)))
    return done


def synthesize_corpus(out_dir, n: int, seed: int = 0, test_fraction: float = 0.2, progress: bool = True,
                      workers: int | None = None, train_sentences: int = 1) -> tuple[Path, Path]:
    """Write ``n`` synthetic clips (16 kHz mono 16-bit FLAC under out_dir/clips/) and the manifests
    out_dir/train.jsonl and out_dir/test.jsonl (written last, atomically). Returns (train, test).
    ``workers`` processes (default: min(2, CPUs)) never change the output. ``train_sentences``: see
    `plan_corpus`."""
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    specs = plan_corpus(n, seed, test_fraction, train_sentences)
    workers = workers or min(2, os.cpu_count() or 1)
    shards = [(specs[i:i + SHARD_SIZE], seed, str(out)) for i in range(0, n, SHARD_SIZE)]
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    lengths: dict[int, int] = {}
    # maxtasksperchild=1: a fresh process (fresh eSpeak state) per shard, which makes output deterministic.
    with mp.get_context(method).Pool(min(workers, len(shards)), maxtasksperchild=1) as pool, \
            tqdm(total=n, desc="synthesising", unit="clip", disable=not progress, file=sys.stderr) as bar:
        for done in pool.imap(_render_shard, shards):
            lengths.update(done)
            bar.update(len(done))
    paths = []
    for split in ("train", "test"):
        chosen = [s for s in specs if s.split == split]
        clips = [Clip(audio=s.audio, text=s.text, duration=round(lengths[s.index] / SAMPLE_RATE, 3)) for s in chosen]
        extras = [{"voice": s.voice, "rate_wpm": s.rate, "peak_dbfs": s.peak_dbfs,
                   "noise_below_peak_db": s.noise_below_peak_db} for s in chosen]
        path = out / f"{split}.jsonl"
        # each line also carries its synthesis parameters: handy for per-voice analysis
        write_jsonl(path, [{**manifest_row(c), **extra} for c, extra in zip(clips, extras)])
        paths.append(path)
    return paths[0], paths[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m whisper_mtl.synth",
        description="Synthesise an English speech corpus with eSpeak NG (varied voices, rates, pitch, "
                    "noise and levels) as 16 kHz FLAC plus train.jsonl / test.jsonl manifests.")
    parser.add_argument("out", type=Path, help="output folder (created; clips go to OUT/clips/)")
    parser.add_argument("--n", type=int, default=1000, help="number of clips in total (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of clips in test.jsonl, with sentence templates unseen in train (default 0.2)")
    parser.add_argument("--train-sentences", type=int, default=1,
                        help="each training clip reads 1..K sentences in one voice (default 1)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default min(2, CPUs)); does not change the output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        train, test = synthesize_corpus(args.out, args.n, args.seed, args.test_fraction,
                                        progress=not args.quiet, workers=args.workers,
                                        train_sentences=args.train_sentences)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"train": str(train), "test": str(test)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
