"""evaluate_model and evaluate.py: batching changes nothing, intensity equals the forward pass, bad files
are reported and skipped, and the JSON summary carries what the README promises."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from whisper_mtl.audio import SAMPLE_RATE, load_audio, pad_or_trim
from whisper_mtl.data import Clip, read_manifest, write_manifest
from whisper_mtl.evaluation import UNTRAINED_HEAD_NOTE, evaluate_model
from whisper_mtl.loudness import measure
from whisper_mtl.metrics import asr_metrics, intensity_metrics
from whisper_mtl.model import WhisperMTL

ROOT = Path(__file__).resolve().parents[1]
MAX_NEW_TOKENS_TINY = 32  # the synthetic sentences need < 30 tokens
MAX_NEW_TOKENS_RANDOM = 6  # the random model never stops by itself: keep its generations short


@pytest.fixture(scope="module")
def tiny_en(tiny_en_dir):
    return WhisperMTL.from_pretrained(str(tiny_en_dir)).eval()


@pytest.fixture(scope="module")
def random_mtl(random_whisper_dir):
    """The small random Whisper with its head marked trained, so intensity metrics are computed."""
    model = WhisperMTL.from_pretrained(str(random_whisper_dir)).eval()
    model.update_config(head_trained=True)
    return model


@pytest.fixture(scope="module")
def test_clips(synth_corpus):
    return read_manifest(synth_corpus[1])


def _batch(model, clips):
    waves = [load_audio(c.audio) for c in clips]
    lengths = torch.tensor([w.numel() for w in waves])
    return torch.stack([pad_or_trim(w, model.window_samples) for w in waves]), lengths


def test_batched_wer_equals_decoding_each_clip_alone(tiny_en, test_clips):
    # A token cap keeps the test fast when tiny.en loops on eSpeak's robotic voice; both paths share it.
    clips = [test_clips[0], test_clips[2]]  # one batch, 3.0 s and 4.7 s: one clip finishes decoding first
    result = evaluate_model(tiny_en, clips, batch_size=2, progress=False, max_new_tokens=MAX_NEW_TOKENS_TINY)
    alone = [tiny_en.predict(*_batch(tiny_en, [c]), max_new_tokens=MAX_NEW_TOKENS_TINY)[0].text for c in clips]
    assert [r["hypothesis"] for r in result.rows] == alone
    references = [c.text for c in clips]
    expected = asr_metrics(references, alone, tokenizer=tiny_en.tokenizer)
    assert (result.wer, result.wer_raw, result.cer) == (expected["wer"], expected["wer_raw"], expected["cer"])
    assert result.n == len(clips) and result.n_skipped == 0
    assert [r["path"] for r in result.rows] == [c.audio for c in clips]  # input order, whatever the batching
    assert 0 < result.cer < 100  # zero-shot tiny.en gets some of the robotic speech right (measured ~50 %)
    # Zero-shot: the bundled checkpoint has no trained head, so no intensity score is claimed.
    assert result.intensity_rmse is None and result.intensity_r is None and result.note == UNTRAINED_HEAD_NOTE
    assert result.summary()["note"] == UNTRAINED_HEAD_NOTE and result.summary()["unit"] == "dBFS"


def test_intensity_equals_the_forward_pass(random_mtl, test_clips):
    random_mtl.train()  # evaluate_model must switch to eval (dropout off) and restore every module's mode
    random_mtl.whisper.model.encoder.eval()  # as train.py keeps a frozen encoder
    result = evaluate_model(random_mtl, test_clips, batch_size=3, progress=False,
                            max_new_tokens=MAX_NEW_TOKENS_RANDOM)
    assert random_mtl.training and random_mtl.intensity_head.training
    assert not random_mtl.whisper.model.encoder.training
    random_mtl.eval()
    waves, lengths = _batch(random_mtl, test_clips)
    with torch.no_grad():
        forward = random_mtl(waves, lengths).intensity_db
    predicted = [r["predicted"] for r in result.rows]
    np.testing.assert_allclose(predicted, forward.tolist(), atol=1e-4)
    targets = [measure(load_audio(c.audio), "rms_dbfs") for c in test_clips]
    np.testing.assert_allclose([r["target"] for r in result.rows], targets, atol=1e-6)
    expected = intensity_metrics(targets, forward.tolist())
    assert result.intensity_rmse == pytest.approx(expected["rmse"], abs=1e-4)
    assert result.intensity_mae == pytest.approx(expected["mae"], abs=1e-4)
    assert result.target == "rms_dbfs" and result.note is None
    assert result.samples_per_s > 0
    lufs = evaluate_model(random_mtl, test_clips[:2], target="lufs", progress=False, max_new_tokens=2)
    assert lufs.target == "lufs" and lufs.summary()["unit"] == "LUFS"
    assert lufs.rows[0]["target"] == pytest.approx(measure(load_audio(test_clips[0].audio), "lufs"))


def test_bad_clips_are_reported_and_skipped(random_mtl, test_clips, tmp_path, capsys):
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"fLaC" + b"\x00" * 200)
    too_long = tmp_path / "long.wav"  # the random model's window is 10 s
    sf.write(too_long, np.full(11 * SAMPLE_RATE, 0.01, dtype=np.float32), SAMPLE_RATE)
    clips = [Clip(audio=str(broken), text="x"), test_clips[0], Clip(audio=str(too_long), text="y"), test_clips[1]]
    result = evaluate_model(random_mtl, clips, batch_size=2, progress=False, max_new_tokens=2)
    assert result.n == 2 and result.n_skipped == 2
    assert [r["path"] for r in result.rows] == [test_clips[0].audio, test_clips[1].audio]
    assert result.skipped[0].startswith(str(broken)) or result.skipped[1].startswith(str(broken))
    err = capsys.readouterr().err
    assert "broken.flac" in err and "long.wav" in err and "longer than the model's 10 s window" in err
    with pytest.raises(ValueError, match="no clip could be evaluated"):
        evaluate_model(random_mtl, clips[:1], progress=False)


def _evaluate_py(*args):
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *args, "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_cli_reports_broken_file_writes_rows_and_baseline(random_whisper_dir, synth_corpus, test_clips, tmp_path):
    from whisper_mtl.baseline import clip_features, fit_ridge

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00")
    manifest = tmp_path / "test.jsonl"
    write_manifest(manifest, [test_clips[0], Clip(audio=str(broken), text="gone"), *test_clips[1:3]])
    features, targets, _, _ = clip_features(read_manifest(synth_corpus[0]), "rms_dbfs", progress=False)
    baseline = fit_ridge(features, targets, "rms_dbfs").save(tmp_path / "baseline.json")

    out = _evaluate_py("--ckpt", str(random_whisper_dir), "--data", str(manifest), "--batch-size", "2",
                       "--max-new-tokens", "3", "--out", str(tmp_path / "rows.jsonl"), "--baseline", str(baseline))
    assert out.returncode == 1, out.stderr  # a skipped clip makes the exit code non-zero
    assert "broken.wav" in out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("n", "n_skipped", "wer", "wer_raw", "cer", "intensity_rmse", "intensity_mae", "intensity_r",
                "target", "samples_per_s"):
        assert key in summary
    assert summary["n"] == 3 and summary["n_skipped"] == 1 and summary["target"] == "rms_dbfs"
    assert summary["intensity_rmse"] is None and "untrained" in summary["note"]  # a fresh random head
    assert summary["baseline"]["n"] == 3 and summary["baseline"]["intensity_rmse"] < 1.0
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["path"] for r in rows] == [c.audio for c in test_clips[:3]]
    assert {"path", "reference", "hypothesis", "target", "predicted", "avg_logprob", "baseline_predicted"} <= set(rows[0])

    # Input errors: a missing manifest and a baseline for another target exit 2 with a one-line message.
    missing = _evaluate_py("--ckpt", str(random_whisper_dir), "--data", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr
    mismatch = _evaluate_py("--ckpt", str(random_whisper_dir), "--data", str(manifest), "--target", "lufs",
                            "--baseline", str(baseline))
    assert mismatch.returncode == 2 and "baseline predicts rms_dbfs" in mismatch.stderr
