"""whisper_mtl.loudness: dBFS and LUFS targets, against theory, ffmpeg's ebur128 meter and each other."""

import math
import re
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from whisper_mtl.loudness import (
    TARGETS,
    UNITS,
    LoudnessError,
    lufs,
    measure,
    measure_batch,
    rms_dbfs,
    rms_dbfs_batch,
)

RNG_SEED = 1234


def sine(freq: float, amplitude: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def speech_like(seconds: float, rate: int, level: float, seed: int) -> np.ndarray:
    """Syllable-sized bursts (~220 ms, Hann envelope) of low-passed noise with random pauses, like speech."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    noise = np.convolve(rng.standard_normal(n), np.ones(6) / 6, mode="same")
    env = np.zeros(n)
    for start in np.arange(0.0, seconds - 0.25, 0.33):
        if rng.random() < 0.7:
            a = int(start * rate)
            b = min(n, a + int(0.22 * rate))
            env[a:b] = np.hanning(b - a) * rng.uniform(0.3, 1.0)
    return level * noise * env


def pink_noise(seconds: float, rate: int, std: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    return std * x / x.std()


def signals(rate: int) -> dict[str, np.ndarray]:
    """Ten test signals: tones, noise and speech-like bursts at several levels and lengths (all >= 1 s)."""
    rng = np.random.default_rng(RNG_SEED + rate)
    return {
        "sine 1 kHz -9 dBFS 3 s": sine(1000, 0.5, 3.0, rate),
        "sine 100 Hz 2 s": sine(100, 0.3, 2.0, rate),
        "sine 3 kHz 2 s": sine(3000, 0.2, 2.0, rate),
        "sine 6 kHz 1 s": sine(6000, 0.2, 1.0, rate),
        "white noise 2 s": 0.1 * rng.standard_normal(2 * rate),
        "pink noise 4 s": pink_noise(4.0, rate, 0.05, seed=1),
        "speech-like 5 s": speech_like(5.0, rate, 0.3, seed=2),
        "speech-like quiet 5 s": speech_like(5.0, rate, 0.3 * 10 ** (-35 / 20), seed=3),
        "speech-like 1.2 s": speech_like(1.2, rate, 0.5, seed=4),
        "tone + noise 2.5 s": sine(440, 0.05, 2.5, rate) + 0.01 * rng.standard_normal(int(2.5 * rate)),
    }


def ffmpeg_lufs(path) -> float:
    """Integrated loudness (LUFS) from ffmpeg's ebur128 filter, read from its metadata at 0.001 LU precision."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg not found: it is the independent BS.1770 meter (apt-get install ffmpeg; .ci/run does it)"
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-i", str(path),
           "-af", "ebur128=metadata=1,ametadata=mode=print:key=lavfi.r128.I", "-f", "null", "-"]
    log = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    values = re.findall(r"lavfi\.r128\.I=(-?[0-9.]+)", log)
    assert values, log[-2000:]
    return float(values[-1])  # the integrated value after the last 100 ms frame


def test_rms_dbfs_of_full_scale_sine_and_square():
    x = sine(1000, 1.0, 1.0, 16000)
    assert rms_dbfs(x) == pytest.approx(-3.0103, abs=0.01)
    assert rms_dbfs(torch.from_numpy(x).float()) == pytest.approx(-3.0103, abs=0.01)
    assert rms_dbfs(np.sign(sine(1000, 1.0, 1.0, 16000) + 1e-9)) == pytest.approx(0.0, abs=1e-9)
    assert rms_dbfs(np.full(100, 0.1)) == pytest.approx(-20.0, abs=1e-9)


@pytest.mark.parametrize("gain_db", [-30.0, -6.0, 3.0])
def test_gain_shifts_both_targets_by_the_gain(gain_db):
    rate = 16000
    for x in (speech_like(4.0, rate, 0.3, seed=7), pink_noise(2.0, rate, 0.05, seed=8)):
        y = x * 10 ** (gain_db / 20)
        assert rms_dbfs(y) - rms_dbfs(x) == pytest.approx(gain_db, abs=0.01)
        assert lufs(y, rate) - lufs(x, rate) == pytest.approx(gain_db, abs=0.01)
        assert measure(y, "lufs") - measure(x, "lufs") == pytest.approx(gain_db, abs=0.01)


def test_lufs_agrees_with_ffmpeg_ebur128(tmp_path):
    rows = []
    for rate in (16000, 48000):
        for name, x in signals(rate).items():
            assert x.size >= rate  # at least 1 s
            path = tmp_path / f"{rate}_{len(rows)}.wav"
            sf.write(str(path), x.astype(np.float32), rate, subtype="FLOAT")  # float: no quantisation
            ours = lufs(x.astype(np.float32), rate)
            theirs = ffmpeg_lufs(path)
            rows.append((rate, name, ours, theirs, ours - theirs))
    report = "\n".join(f"{r} Hz {n:24s} ours {a:8.3f} ffmpeg {b:8.3f} diff {d:+.3f} LU" for r, n, a, b, d in rows)
    print(report)
    assert len(rows) >= 16
    worst = max(abs(d) for *_, d in rows)
    assert worst <= 0.25, report


def _k_weighting_gain_db(freq: float) -> float:
    """Gain of the analog K-weighting filter (BS.1770's two stages, parameters that reproduce its 48 kHz
    coefficients) at freq Hz: the rate-independent reference for how a tone should be metered."""
    vh = 10 ** (3.999843853973347 / 20)
    vb = vh**0.4996667741545416
    s = 1j * freq / 1681.974450955533
    q = 0.7071752369554196
    shelf = (vh * s * s + vb * s / q + 1) / (s * s + s / q + 1)
    s = 1j * freq / 38.13547087602444
    q = 0.5003270373238773
    high_pass = s * s / (s * s + s / q + 1)
    return 20 * math.log10(abs(shelf * high_pass))


@pytest.mark.parametrize("rate", [16000, 48000])
def test_lufs_of_tones_matches_analog_k_weighting(rate):
    # At 16 kHz pyloudnorm designs the K-weighting biquads for 16 kHz; this bounds what that costs.
    for freq in (100, 500, 1000, 2000, 3000, 5000, 7000):
        amplitude = 0.25
        expected = -0.691 + 20 * math.log10(amplitude / math.sqrt(2)) + _k_weighting_gain_db(freq)
        assert lufs(sine(freq, amplitude, 2.0, rate), rate) == pytest.approx(expected, abs=0.1), freq


def test_undefined_loudness_raises_never_returns_inf_or_nan():
    rate = 16000
    silence = np.zeros(rate)
    cases = {
        "rms of digital silence": lambda: rms_dbfs(silence),
        "rms of empty": lambda: rms_dbfs(np.zeros(0)),
        "rms of NaN": lambda: rms_dbfs(np.array([0.1, np.nan])),
        "lufs of digital silence": lambda: lufs(silence, rate),
        "lufs of near-silence (fully gated)": lambda: lufs(1e-5 * np.random.default_rng(0).standard_normal(rate), rate),
        "lufs of 0.3 s": lambda: lufs(sine(1000, 0.5, 0.3, rate), rate),
        "lufs of 0.3 s at 48 kHz": lambda: lufs(sine(1000, 0.5, 0.3, 48000), 48000),
        "lufs of empty": lambda: lufs(np.zeros(0), rate),
        "lufs of inf": lambda: lufs(np.full(rate, np.inf), rate),
        "measure rms of silence": lambda: measure(torch.zeros(rate), "rms_dbfs"),
        "measure lufs of silence": lambda: measure(torch.zeros(rate), "lufs"),
        "batch rms with a silent row": lambda: rms_dbfs_batch(torch.stack([torch.ones(rate), torch.zeros(rate)]),
                                                              torch.tensor([rate, rate])),
        "batch rms with a zero length": lambda: rms_dbfs_batch(torch.ones(2, rate), torch.tensor([rate, 0])),
        "batch rms with a NaN row": lambda: rms_dbfs_batch(torch.tensor([[0.1, 0.2], [0.1, float("nan")]]),
                                                           torch.tensor([2, 2])),
        "batch lufs with a short row": lambda: measure_batch(torch.ones(2, rate), torch.tensor([rate, 100]), "lufs"),
    }
    for name, call in cases.items():
        with pytest.raises(LoudnessError) as info:
            value = call()
            pytest.fail(f"{name}: returned {value!r} instead of raising")
        assert isinstance(info.value, ValueError) and str(info.value), name
    assert "silence" in _message(lambda: rms_dbfs(silence))
    assert "0.4 s" in _message(lambda: lufs(np.ones(rate // 4), rate))
    assert "gated" in _message(lambda: lufs(silence, rate))
    assert "row 1" in _message(cases["batch rms with a silent row"])
    # 0.4 s exactly is long enough (one gating block)
    assert math.isfinite(lufs(sine(1000, 0.5, 0.4, rate), rate))


def _message(call) -> str:
    with pytest.raises(LoudnessError) as info:
        call()
    return str(info.value)


def test_measure_dispatch_and_units():
    x = speech_like(2.0, 16000, 0.3, seed=5)
    assert TARGETS == ("rms_dbfs", "lufs") and UNITS == {"rms_dbfs": "dBFS", "lufs": "LUFS"}
    assert measure(x, "rms_dbfs") == rms_dbfs(x)
    assert measure(x, "lufs") == lufs(x)
    with pytest.raises(ValueError, match="unknown loudness target"):
        measure(x, "loudness")
    with pytest.raises(ValueError, match="unknown loudness target"):
        measure_batch(torch.ones(1, 16000), torch.tensor([16000]), "db")


def test_batched_targets_agree_with_scalar_functions():
    rate = 16000
    clips = [speech_like(s, rate, lvl, seed=i) for i, (s, lvl) in enumerate([(1.0, 0.3), (2.5, 0.05), (0.7, 0.9), (3.0, 0.01)])]
    width = max(c.size for c in clips)
    waves = torch.full((len(clips), width), 0.7)  # non-zero padding: the batched path must ignore it
    for b, c in enumerate(clips):
        waves[b, : c.size] = torch.from_numpy(c).float()
    lengths = torch.tensor([c.size for c in clips])
    scalar_rms = torch.tensor([rms_dbfs(waves[b, : int(n)]) for b, n in enumerate(lengths)])
    batched_rms = rms_dbfs_batch(waves, lengths)
    assert batched_rms.shape == (4,) and batched_rms.dtype == torch.float32
    assert torch.allclose(batched_rms.double(), scalar_rms.double(), atol=1e-4)
    assert torch.equal(measure_batch(waves, lengths, "rms_dbfs"), batched_rms)
    batched_lufs = measure_batch(waves, lengths, "lufs")
    scalar_lufs = torch.tensor([lufs(waves[b, : int(n)]) for b, n in enumerate(lengths)])
    assert torch.allclose(batched_lufs.double(), scalar_lufs.double(), atol=1e-4)
    assert torch.isfinite(batched_lufs).all() and torch.isfinite(batched_rms).all()
