"""whisper_mtl.audio: decoding (formats, rates, channels, broken files) and the log-mel front end."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import WhisperFeatureExtractor

from whisper_mtl import audio
from whisper_mtl.audio import (
    HOP_LENGTH,
    N_SAMPLES,
    SAMPLE_RATE,
    AudioError,
    encoder_frames,
    load_audio,
    log_mel_spectrogram,
    pad_or_trim,
)

FORMATS = {  # extension -> (soundfile format, subtype, lossy)
    "wav": ("WAV", "PCM_16", False),
    "flac": ("FLAC", "PCM_16", False),
    "ogg": ("OGG", "VORBIS", True),
    "mp3": ("MP3", "MPEG_LAYER_III", True),
}
RATES = (8000, 22050, 44100, 48000)
SECONDS = 1.5
TONE_HZ = 440.0


def tone(rate: int, amplitude: float, seconds: float = SECONDS) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return amplitude * np.sin(2 * np.pi * TONE_HZ * t)


def level_db(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return 10 * math.log10(np.mean(x**2))


def test_constants_describe_whisper_front_end():
    assert SAMPLE_RATE == 16_000 and audio.N_FFT == 400 and HOP_LENGTH == 160
    assert audio.MEL_FRAMES_PER_SECOND == 100 and audio.ENCODER_FRAMES_PER_SECOND == 50
    assert audio.CHUNK_SECONDS == 30 and N_SAMPLES == 480_000 and audio.N_FRAMES == 3000


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("ext", list(FORMATS))
def test_load_audio_decodes_formats_rates_and_channels(tmp_path, ext, rate, channels):
    fmt, subtype, lossy = FORMATS[ext]
    if channels == 1:
        data, expected_amplitude = tone(rate, 0.4), 0.4
    else:  # mean of channels: (0.6 + 0.2) / 2 = 0.4; the first channel alone or the sum would be caught
        data, expected_amplitude = np.stack([tone(rate, 0.6), tone(rate, 0.2)], axis=1), 0.4
    path = tmp_path / f"tone_{rate}_{channels}ch.{ext}"
    sf.write(str(path), data.astype(np.float32), rate, format=fmt, subtype=subtype)

    wave = load_audio(path)

    assert wave.dtype == torch.float32 and wave.dim() == 1
    expected_len = SECONDS * SAMPLE_RATE
    assert abs(wave.numel() - expected_len) <= max(1, expected_len / 16_000)
    middle = wave[2000:-2000]  # away from resampler / codec edges
    expected_db = 20 * math.log10(expected_amplitude / math.sqrt(2))
    assert level_db(middle) == pytest.approx(expected_db, abs=0.3 if lossy else 0.05)
    if not lossy:  # the waveform itself, not just its level: right pitch and phase at 16 kHz
        reference = torch.from_numpy(tone(SAMPLE_RATE, expected_amplitude)).float()[2000:-2000]
        assert (middle - reference).abs().max() < 0.01


@pytest.mark.parametrize("rate", [11025, 16000, 96000])
def test_load_audio_other_rates_in_the_supported_range(tmp_path, rate):
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(str(path), tone(rate, 0.4).astype(np.float32), rate, subtype="FLOAT")
    wave = load_audio(path)
    assert abs(wave.numel() - SECONDS * SAMPLE_RATE) <= 1  # 1.5 s at 11025 Hz is 16537.5 samples
    reference = torch.from_numpy(tone(SAMPLE_RATE, 0.4)).float()
    assert (wave[2000:22000] - reference[2000:22000]).abs().max() < 0.01


def test_load_audio_path_with_spaces_and_non_ascii(tmp_path):
    folder = tmp_path / "dossier été" / "語音 clips"
    folder.mkdir(parents=True)
    path = folder / "ça va — ünïcode.flac"
    sf.write(str(path), tone(SAMPLE_RATE, 0.5).astype(np.float32), SAMPLE_RATE)
    wave = load_audio(str(path))
    assert wave.numel() == SECONDS * SAMPLE_RATE
    np.testing.assert_allclose(wave.numpy(), tone(SAMPLE_RATE, 0.5), atol=1e-4)


def _broken_files(tmp_path):
    """(name, path) for every kind of file load_audio must refuse."""
    good = tmp_path / "good.wav"
    sf.write(str(good), tone(SAMPLE_RATE, 0.5).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    raw = good.read_bytes()
    flac = tmp_path / "good.flac"
    sf.write(str(flac), tone(SAMPLE_RATE, 0.5).astype(np.float32), SAMPLE_RATE)
    mp3 = tmp_path / "good.mp3"
    sf.write(str(mp3), tone(SAMPLE_RATE, 0.5).astype(np.float32), SAMPLE_RATE, format="MP3")
    cases = {
        "missing": tmp_path / "does not exist.wav",
        "empty": tmp_path / "empty.wav",
        "truncated wav": tmp_path / "truncated.wav",
        "truncated flac": tmp_path / "truncated.flac",
        "truncated mp3": tmp_path / "truncated.mp3",
        "undecodable": tmp_path / "noise bytes.wav",
        "text as audio": tmp_path / "notes.mp3",
        "zero-length": tmp_path / "zero_frames.wav",
        "directory": tmp_path / "a_folder.flac",
        "rate below 8 kHz": tmp_path / "telephone_4k.wav",
    }
    cases["empty"].write_bytes(b"")
    cases["truncated wav"].write_bytes(raw[: len(raw) // 2])
    cases["truncated flac"].write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    cases["truncated mp3"].write_bytes(mp3.read_bytes()[: mp3.stat().st_size // 2])
    cases["undecodable"].write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    cases["text as audio"].write_text("this is not audio\n" * 50)
    sf.write(str(cases["zero-length"]), np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    cases["directory"].mkdir()
    sf.write(str(cases["rate below 8 kHz"]), tone(4000, 0.5).astype(np.float32), 4000)
    return cases


def test_broken_files_raise_audio_error_naming_the_file(tmp_path):
    causes = {}
    for name, path in _broken_files(tmp_path).items():
        with pytest.raises(AudioError) as info:
            load_audio(path)
        message = str(info.value)
        assert isinstance(info.value, ValueError)
        assert message.startswith(f"{path}: "), (name, message)
        assert "\n" not in message and len(message) > len(str(path)) + 5, (name, message)
        causes[name] = message
    assert "no such file" in causes["missing"]
    assert "empty" in causes["empty"]
    assert all("truncated" in causes[f"truncated {kind}"] for kind in ("wav", "flac", "mp3"))
    assert "not recognised" in causes["undecodable"].lower() and "not recognised" in causes["text as audio"]
    assert "zero-length" in causes["zero-length"]
    assert "4000 Hz" in causes["rate below 8 kHz"]


def test_pad_or_trim_and_encoder_frames():
    x = torch.arange(10.0).repeat(2, 1)
    assert torch.equal(pad_or_trim(x, 4), x[:, :4])
    padded = pad_or_trim(x, 13)
    assert padded.shape == (2, 13) and torch.equal(padded[:, :10], x) and not padded[:, 10:].any()
    assert pad_or_trim(x, 10) is x
    assert [encoder_frames(n) for n in (1, 320, 321, 16_000, N_SAMPLES)] == [1, 1, 2, 50, 1500]
    assert torch.equal(encoder_frames(torch.tensor([320, 321, 16_000])), torch.tensor([1, 2, 50]))


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_whisper_feature_extractor(n_mels):
    g = torch.Generator().manual_seed(0)
    t = torch.arange(N_SAMPLES) / SAMPLE_RATE
    speechy = 0.3 * torch.sin(2 * math.pi * 220 * t) * (torch.sin(2 * math.pi * 3 * t) > 0)
    waves = torch.stack(
        [
            pad_or_trim(0.1 * torch.randn(5 * SAMPLE_RATE, generator=g), N_SAMPLES),  # 5 s of noise, then padding
            speechy,
            1e-3 * torch.randn(N_SAMPLES, generator=g),  # quiet: the max-8 floor differs per clip
        ]
    )
    extractor = WhisperFeatureExtractor(feature_size=n_mels)
    expected = extractor(list(waves.numpy()), sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features

    features = log_mel_spectrogram(waves, n_mels=n_mels)

    assert features.shape == (3, n_mels, N_SAMPLES // HOP_LENGTH) == expected.shape
    assert features.dtype == torch.float32
    assert (features - expected).abs().max().item() < 1e-4
    # one clip alone gives the same features as inside a batch (per-clip normalisation), and 1-D works
    assert torch.allclose(log_mel_spectrogram(waves[2], n_mels=n_mels), features[2], atol=1e-5)


def test_log_mel_on_a_shorter_window_matches_extractor():
    wave = 0.2 * torch.randn(2, 10 * SAMPLE_RATE, generator=torch.Generator().manual_seed(1))
    extractor = WhisperFeatureExtractor(feature_size=80)
    expected = extractor(
        list(wave.numpy()), sampling_rate=SAMPLE_RATE, max_length=wave.shape[1], return_tensors="pt"
    ).input_features
    features = log_mel_spectrogram(wave)
    assert features.shape == (2, 80, 1000)
    assert (features - expected).abs().max().item() < 1e-4


def test_mel_level_reads_white_noise_rms_and_follows_gain():
    """mel_level_db: white noise reads its RMS level in dBFS; a gain moves it by exactly that gain; only the
    clip's real frames count (the padding after them is ignored however long it is)."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(5 * audio.SAMPLE_RATE, generator=g)
    lengths = torch.tensor([noise.numel()])
    levels = []
    for gain_db in (-20.0, -50.0, -44.0):
        wave = torch.zeros(audio.N_SAMPLES)
        wave[: noise.numel()] = noise * 10 ** (gain_db / 20)
        level = float(audio.mel_level_db(audio.log_mel_spectrogram(wave[None]), lengths)[0])
        rms = 10 * math.log10(float((wave[: noise.numel()].double() ** 2).mean()))
        assert level == pytest.approx(rms, abs=0.1), gain_db
        levels.append(level)
    assert levels[2] - levels[1] == pytest.approx(6.0, abs=0.01)
    # the same clip counted over a longer span of (silent) frames reads lower: padding would dilute it
    longer = audio.mel_level_db(audio.log_mel_spectrogram(wave[None]), lengths * 2)
    assert float(longer[0]) == pytest.approx(levels[2] - 10 * math.log10(2), abs=0.1)
