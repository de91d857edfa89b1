"""The torchaudio-features + ridge baseline: features, the closed-form fit, save/load and baseline.py."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from whisper_mtl.audio import SAMPLE_RATE, load_audio
from whisper_mtl.baseline import (FEATURE_NAMES, RidgeBaseline, clip_features, extract_features, features_of_waves,
                                  fit_ridge)
from whisper_mtl.data import Clip, apply_gain, max_gain_db, read_manifest, write_manifest
from whisper_mtl.loudness import rms_dbfs
from whisper_mtl.metrics import intensity_metrics

ROOT = Path(__file__).resolve().parents[1]


def _noise(seconds: float, db: float, seed: int) -> torch.Tensor:
    """White noise at RMS ≈ db dBFS."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(int(seconds * SAMPLE_RATE), generator=g) * 10 ** (db / 20)


def test_features_are_batching_invariant_and_measure_rms():
    waves = [_noise(s, db, i) for i, (s, db) in enumerate([(1.0, -30), (0.5, -12), (2.3, -45), (0.03, -20)])]
    waves.append(torch.zeros(SAMPLE_RATE // 2))  # digital silence: features stay finite
    together = features_of_waves(waves, batch_size=8)
    alone = torch.cat([features_of_waves([w]) for w in waves])
    assert together.shape == (len(waves), len(FEATURE_NAMES))
    assert torch.isfinite(together).all()
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-3)
    rms = together[:-1, FEATURE_NAMES.index("rms_dbfs")]
    np.testing.assert_allclose(rms.numpy(), [rms_dbfs(w) for w in waves[:-1]], atol=1e-3)
    # louder by 6 dB: every level feature moves by 6 dB, the spectral shape does not move
    louder = features_of_waves([waves[0] * 2.0])[0]
    for name in ("rms_dbfs", "frame_db_mean", "frame_db_p50", "frame_db_max"):
        assert louder[FEATURE_NAMES.index(name)] - together[0, FEATURE_NAMES.index(name)] == pytest.approx(6.02, abs=0.01)
    for name in ("centroid_khz_mean", "log_flatness_mean"):
        assert louder[FEATURE_NAMES.index(name)] == pytest.approx(together[0, FEATURE_NAMES.index(name)], abs=1e-3)


def test_extract_features_rejects_bad_shapes():
    with pytest.raises(ValueError, match="at least 400 samples"):
        extract_features(torch.zeros(2, 1000), torch.tensor([1000, 100]))
    with pytest.raises(ValueError, match=r"waves \[B, T\]"):
        extract_features(torch.zeros(1000), torch.tensor([1000]))


def test_ridge_recovers_a_planted_linear_relation():
    g = torch.Generator().manual_seed(1)
    n, f = 300, len(FEATURE_NAMES)
    x = torch.randn(n, f, generator=g, dtype=torch.float64) * torch.linspace(0.1, 10, f, dtype=torch.float64) + 3.0
    w_true = torch.randn(f, generator=g, dtype=torch.float64)
    y = x @ w_true - 20.0 + 0.01 * torch.randn(n, generator=g, dtype=torch.float64)
    model = fit_ridge(x.float(), y, "rms_dbfs")
    raw_weights = model.weights / model.std  # back to dB per unit of the raw feature
    torch.testing.assert_close(raw_weights, w_true, rtol=0, atol=0.02)
    assert model.ridge_lambda <= 1e-2  # almost noiseless: the search must not over-regularise
    assert model.holdout_rmse < 0.05
    x_new = torch.randn(50, f, generator=g, dtype=torch.float64) + 3.0
    pred = model.predict_features(x_new.float()).double()
    assert (pred - (x_new @ w_true - 20.0)).abs().max() < 0.2


def test_ridge_chooses_strong_regularisation_for_pure_noise():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(40, len(FEATURE_NAMES), generator=g), torch.randn(40, generator=g)
    assert fit_ridge(x, y, "rms_dbfs").ridge_lambda >= 10.0
    with pytest.raises(ValueError, match="expected features"):
        fit_ridge(x[:, :30], y, "rms_dbfs")
    with pytest.raises(ValueError, match="at least 4"):
        fit_ridge(x[:3], y[:3], "rms_dbfs")
    with pytest.raises(ValueError, match="unknown intensity target"):
        fit_ridge(x, y, "peak")


@pytest.fixture(scope="module")
def gain_varied(synth_corpus):
    """Synthetic speech at 4 gains per clip (within each clip's headroom): (train waves, test waves)."""
    def vary(manifest):
        out = []
        for i, clip in enumerate(read_manifest(manifest)):
            wave = load_audio(clip.audio)
            top = min(max_gain_db(wave), 0.0)
            out += [apply_gain(wave, top - d) for d in (0.0, 7.0 + i % 3, 15.0, 24.0 + i % 5)]
        return out
    return vary(synth_corpus[0]), vary(synth_corpus[1])


def test_baseline_reaches_half_a_db_on_gain_varied_speech(gain_varied):
    train, test = gain_varied
    model = fit_ridge(features_of_waves(train), [rms_dbfs(w) for w in train], "rms_dbfs")
    scores = intensity_metrics([rms_dbfs(w) for w in test], model.predict_waves(test))
    assert scores["rmse"] < 0.5, scores
    assert scores["r"] > 0.99


def test_save_load_round_trip(tmp_path, gain_varied):
    train, test = gain_varied
    model = fit_ridge(features_of_waves(train), [rms_dbfs(w) for w in train], "rms_dbfs")
    path = model.save(tmp_path / "sub" / "baseline.json")
    loaded = RidgeBaseline.load(path)
    assert loaded.target == "rms_dbfs" and loaded.ridge_lambda == model.ridge_lambda
    assert loaded.predict_waves(test) == pytest.approx(model.predict_waves(test), abs=1e-4)
    assert json.loads(path.read_text())["unit"] == "dBFS"
    assert not list(path.parent.glob("*.tmp"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: cannot read baseline"):
        RidgeBaseline.load(bad)
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="bad.json: not a whisper_mtl baseline"):
        RidgeBaseline.load(bad)


def test_clip_features_reports_and_skips_bad_files(tmp_path, capsys):
    waves = {"short.wav": _noise(0.5, -20, 0), "long.wav": _noise(2.0, -35, 1)}
    for name, wave in waves.items():
        sf.write(tmp_path / name, wave.numpy(), SAMPLE_RATE, subtype="FLOAT")
    sf.write(tmp_path / "silent.wav", np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    (tmp_path / "broken.flac").write_bytes(b"fLaC not really")
    names = ["broken.flac", "short.wav", "silent.wav", "long.wav"]
    clips = [Clip(audio=str(tmp_path / n), text="x") for n in names]
    clips.append(Clip(audio=str(tmp_path / "short.wav"), text="x", intensity=3.5))  # a label wins
    features, targets, kept, skipped = clip_features(clips, "rms_dbfs", batch_size=2, progress=False)
    assert kept == [1, 3, 4]  # input order, although decoded longest first
    torch.testing.assert_close(features, features_of_waves([waves["short.wav"], waves["long.wav"], waves["short.wav"]]))
    assert targets[:2] == pytest.approx([rms_dbfs(waves["short.wav"]), rms_dbfs(waves["long.wav"])], abs=1e-4)
    assert targets[2] == 3.5
    assert sorted(line.split(":")[0] for line in skipped) == [str(tmp_path / "broken.flac"), str(tmp_path / "silent.wav")]
    err = capsys.readouterr().err
    assert "broken.flac" in err and "silent.wav: digital silence" in err
    _, no_targets, kept, _ = clip_features(clips, None, progress=False)
    assert kept == [1, 2, 3, 4] and no_targets[:3] == [None, None, None]  # no target: silence is fine


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "baseline.py"), *args, "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_cli_fits_saves_and_reports_broken_files(tmp_path, synth_corpus):
    train, test = synth_corpus
    clips = read_manifest(test)
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"\x00" * 100)
    bad_test = tmp_path / "test.jsonl"
    write_manifest(bad_test, [Clip(audio=str(broken), text="nothing")] + clips)
    out = _run("--train", str(train), "--test", str(bad_test), "--target", "rms", "--save", str(tmp_path / "b.json"))
    assert out.returncode == 1, out.stderr
    assert "broken.flac" in out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["n"] == len(clips) and summary["n_skipped"] == 1
    assert summary["target"] == "rms_dbfs" and summary["unit"] == "dBFS"
    assert summary["intensity_rmse"] < 1.0 and summary["intensity_r"] > 0.95
    assert RidgeBaseline.load(tmp_path / "b.json").n_train == len(read_manifest(train))
    # A clean run exits 0; an unknown target is refused by argparse (exit 2).
    ok = _run("--train", str(train), "--test", str(test), "--target", "lufs")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["unit"] == "LUFS"
    assert _run("--train", str(train), "--target", "peak").returncode == 2
    missing = _run("--train", str(tmp_path / "nope.jsonl"), "--target", "rms")
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr
