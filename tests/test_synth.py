"""The synthetic eSpeak NG corpus: layout, exact transcripts, level span, determinism, disjoint splits."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from whisper_mtl.audio import SAMPLE_RATE, load_audio
from whisper_mtl.data import read_manifest
from whisper_mtl.loudness import lufs, rms_dbfs
from whisper_mtl.synth import TEST_TEMPLATES, TRAIN_TEMPLATES, number_words, plan_corpus, synthesize_corpus, voice_variants


def test_number_words_are_spoken_forms():
    assert number_words(0) == "zero"
    assert number_words(7) == "seven"
    assert number_words(40) == "forty"
    assert number_words(95) == "ninety five"
    assert number_words(300) == "three hundred"
    assert number_words(342) == "three hundred and forty two"
    with pytest.raises(ValueError):
        number_words(1000)


def test_corpus_layout_and_manifests(synth_corpus):
    train_path, test_path = synth_corpus
    train, test = read_manifest(train_path), read_manifest(test_path)
    assert (len(train), len(test)) == (19, 5)  # 24 clips, round(24 * 0.2) = 5 in test
    assert not {c.text for c in train} & {c.text for c in test}
    for clip in train + test:
        info = sf.info(clip.audio)
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", SAMPLE_RATE, 1)
        assert clip.duration == pytest.approx(info.frames / SAMPLE_RATE, abs=1e-3)
        assert 1.5 < clip.duration < 10.0
        assert not any(ch.isdigit() for ch in clip.text)  # numbers are written as spoken
        assert clip.text[0].isupper() and clip.text[-1] in ".?"
        assert clip.intensity is None  # levels are measured, not labelled
    # Extra keys describe the synthesis (voice accent+variant) and are ignored by read_manifest.
    rows = [json.loads(line) for line in Path(train_path).read_text().splitlines()]
    assert all("+" in row["voice"] for row in rows)
    assert len({row["voice"] for row in rows}) >= 10


def test_levels_span_at_least_30_db(synth_corpus):
    clips = read_manifest(synth_corpus[0]) + read_manifest(synth_corpus[1])
    waves = [load_audio(c.audio) for c in clips]
    rms = [rms_dbfs(w) for w in waves]
    loudness = [lufs(w) for w in waves]
    assert max(rms) - min(rms) >= 30.0, rms
    assert max(loudness) - min(loudness) >= 30.0, loudness
    assert max(float(w.abs().max()) for w in waves) < 1.0  # never clipped
    assert min(float(w.abs().max()) for w in waves) > 10 ** (-45 / 20)  # nothing near silence


def test_splits_use_different_sentence_templates():
    plan = plan_corpus(300, seed=3)
    train = [s.text for s in plan if s.split == "train"]
    test = [s.text for s in plan if s.split == "test"]
    assert (len(train), len(test)) == (240, 60)
    assert len(set(train + test)) == 300  # no transcript twice, across and within splits
    # Sentence openings of the test grammar never occur in train (templates are disjoint).
    opening = lambda text: " ".join(text.split()[:1])  # noqa: E731
    test_openings = {"Did", "When", "There", "Could"}
    assert {opening(t) for t in test if opening(t) in test_openings}
    assert not [t for t in train if t.startswith(("Did ", "When ", "Could ", "There are "))]
    assert len(TRAIN_TEMPLATES) >= 10 and len(TEST_TEMPLATES) >= 5
    assert len({s.voice for s in plan}) > 100  # accents x variants
    assert len(voice_variants()) >= 100


def test_byte_identical_for_a_seed_whatever_the_workers(tmp_path):
    # 20 clips = two shards, so the one-process and two-process runs really schedule differently.
    a = synthesize_corpus(tmp_path / "a", n=20, seed=5, progress=False, workers=1)
    b = synthesize_corpus(tmp_path / "b", n=20, seed=5, progress=False, workers=2)
    c = synthesize_corpus(tmp_path / "c", n=20, seed=6, progress=False, workers=2)
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes()
    files_a = sorted((tmp_path / "a" / "clips").iterdir())
    assert len(files_a) == 20
    for f in files_a:
        assert f.read_bytes() == (tmp_path / "b" / "clips" / f.name).read_bytes(), f.name
    assert a[0].read_bytes() != c[0].read_bytes()
    assert (tmp_path / "a" / "clips" / "00000.flac").read_bytes() != (tmp_path / "c" / "clips" / "00000.flac").read_bytes()


def test_cli_writes_corpus_and_rejects_bad_arguments(tmp_path):
    out = tmp_path / "cli"
    run = subprocess.run([sys.executable, "-m", "whisper_mtl.synth", str(out), "--n", "3", "--seed", "1", "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    paths = json.loads(run.stdout)
    assert len(read_manifest(paths["train"])) == 2 and len(read_manifest(paths["test"])) == 1
    bad = subprocess.run([sys.executable, "-m", "whisper_mtl.synth", str(out), "--n", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "n must be >= 1" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_training_clips_can_read_several_sentences(tmp_path):
    """train_sentences=K: training clips read 1..K sentences in one voice, kept under the length cap; test
    clips read one; K=1 is the one-sentence corpus unchanged."""
    from whisper_mtl.synth import MULTI_SENTENCE_MAX_S, _estimated_seconds

    plan = plan_corpus(60, seed=0, train_sentences=6)
    sentences = lambda spec: sum(spec.text.count(c) for c in ".?")  # noqa: E731
    train = [s for s in plan if s.split == "train"]
    assert all(sentences(s) == 1 for s in plan if s.split == "test")
    assert max(sentences(s) for s in train) >= 4 and min(sentences(s) for s in train) == 1
    assert all(1 <= sentences(s) <= 6 for s in train)
    assert all(_estimated_seconds(s.text, s.rate, s.word_gap) <= MULTI_SENTENCE_MAX_S for s in train if sentences(s) > 1)
    assert plan_corpus(60, seed=0, train_sentences=1) == plan_corpus(60, seed=0)
    with pytest.raises(ValueError, match="train_sentences"):
        plan_corpus(10, seed=0, train_sentences=0)
    train_jsonl, _ = synthesize_corpus(tmp_path, n=5, seed=0, train_sentences=6, progress=False)
    clips = read_manifest(train_jsonl)
    assert max(sentences(c) for c in clips) > 1
    assert all(0 < c.duration < 29.0 for c in clips)  # inside Whisper's 30 s window
