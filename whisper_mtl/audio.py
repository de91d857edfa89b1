"""Audio in: decoding any file to the mono 16 kHz float32 signal Whisper hears, and Whisper's log-mel front end.

`load_audio` decodes with soundfile (wav, flac, ogg, mp3, ...; torchaudio 2.11's own loader needs
torchcodec), averages the channels and resamples with torchaudio. `log_mel_spectrogram` is the batched,
device-side twin of transformers' `WhisperFeatureExtractor` (same STFT, Slaney mel filters, log10,
max-8 clamp and (x+4)/4 scaling per clip) so features can be computed on the GPU inside the model.
"""

from __future__ import annotations

import math
import os
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16_000  # Hz, what Whisper hears
N_FFT = 400  # samples (25 ms STFT window)
HOP_LENGTH = 160  # samples (10 ms) -> 100 mel frames per second
MEL_FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100
ENCODER_FRAMES_PER_SECOND = MEL_FRAMES_PER_SECOND // 2  # 50: the encoder's second conv has stride 2
SAMPLES_PER_ENCODER_FRAME = SAMPLE_RATE // ENCODER_FRAMES_PER_SECOND  # 320
CHUNK_SECONDS = 30  # Whisper's window, s
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480 000 samples in a 30 s window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a 30 s window
MIN_SOURCE_RATE, MAX_SOURCE_RATE = 8_000, 192_000  # Hz accepted by load_audio (tested 8-96 kHz)


_TRUNCATED_CHUNK = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)  # libsndfile's WAV report
_STREAMING_SIZE = 0xFFFFFF00  # writers that stream WAV leave the size at 0xFFFFFFFF: not a truncation
_FRAME_SLACK = 2 * 1152  # samples: two MPEG frames of tolerance on an estimated length


class AudioError(ValueError):
    """A file that cannot be turned into audio. Message: "<path>: <cause>" on one line."""

    def __init__(self, path, cause: str):
        self.path = str(path)
        self.cause = " ".join(str(cause).split())  # one line, whatever libsndfile said
        super().__init__(f"{self.path}: {self.cause}")


def load_audio(path: str | os.PathLike) -> torch.Tensor:
    """Decode `path` to the signal the model hears.

    Returns a 1-D float32 tensor [T] at SAMPLE_RATE (16 kHz), mono (mean of the channels), in full-scale
    units (±1.0). Raises AudioError naming the path and the cause for a missing, empty, truncated,
    undecodable or zero-length file.
    """
    path = Path(path)
    try:
        if not path.exists():
            raise AudioError(path, "no such file")
        if path.is_dir():
            raise AudioError(path, "is a directory, not an audio file")
        if path.stat().st_size == 0:
            raise AudioError(path, "empty file (0 bytes)")
        with sf.SoundFile(str(path)) as f:
            rate, declared, info = f.samplerate, f.frames, f.extra_info
            if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
                raise AudioError(path, f"unsupported sample rate {rate} Hz ({MIN_SOURCE_RATE}-{MAX_SOURCE_RATE} Hz accepted)")
            data = f.read(dtype="float32", always_2d=True)  # [frames, channels]
    except (sf.LibsndfileError, OSError, RuntimeError, TypeError, ValueError) as e:
        if isinstance(e, AudioError):
            raise
        raise AudioError(path, f"cannot decode audio: {_libsndfile_reason(e)}") from None
    # libsndfile reads a cut-off file up to the cut without a word: compare with what the header declared.
    cut = _TRUNCATED_CHUNK.search(info)
    if cut and int(cut.group(2)) < int(cut.group(1)) < _STREAMING_SIZE:
        raise AudioError(path, f"truncated: data chunk declares {cut.group(1)} bytes, file holds {cut.group(2)}")
    missing = declared - data.shape[0]
    if 0 < declared < 2**62 and missing > max(_FRAME_SLACK, declared // 100):  # mp3 lengths are estimates
        raise AudioError(path, f"truncated: header declares {declared} frames, only {data.shape[0]} decodable")
    if data.shape[0] == 0:
        raise AudioError(path, "no audio samples (zero-length, or cut off before the first frame)")
    if not np.isfinite(data).all():
        raise AudioError(path, "decoded samples contain NaN or infinity")
    wave = torch.from_numpy(data).mean(dim=1)
    if rate != SAMPLE_RATE:
        wave = resample(wave, rate, SAMPLE_RATE)
    return wave.contiguous()


def _libsndfile_reason(error: Exception) -> str:
    """libsndfile's message without the repeated path; its "does not exist" for unknown bytes means unrecognised."""
    reason = re.sub(r"^Error opening .*?: |^Error : ", "", str(error).strip())
    if "does not exist or is not a regular file" in reason:  # the file exists (checked above): libsndfile
        return "format not recognised"  # says this when a known extension holds unknown bytes
    if "lost sync" in reason:
        return f"{reason.rstrip('.')} (truncated or corrupt)"
    return reason.rstrip(".") or type(error).__name__


def resample(wave: torch.Tensor, orig_rate: int, new_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Band-limited resampling of [..., T] from orig_rate to new_rate (Hz); output has ceil(T·new/orig) samples."""
    if orig_rate == new_rate:
        return wave
    g = math.gcd(int(orig_rate), int(new_rate))
    return AF.resample(wave, int(orig_rate) // g, int(new_rate) // g)


def pad_or_trim(waves: torch.Tensor, n_samples: int = N_SAMPLES) -> torch.Tensor:
    """Zero-pad or cut the last dimension of `waves` to exactly n_samples."""
    length = waves.shape[-1]
    if length > n_samples:
        return waves[..., :n_samples]
    if length < n_samples:
        return torch.nn.functional.pad(waves, (0, n_samples - length))
    return waves


def encoder_frames(n_samples: int | torch.Tensor) -> int | torch.Tensor:
    """Encoder frames (50 per s) that hold real audio for a clip of n_samples at 16 kHz: ceil(n / 320).

    Works on ints and on integer tensors (elementwise). Not clamped to the model's window.
    """
    if isinstance(n_samples, torch.Tensor):
        return torch.div(n_samples + SAMPLES_PER_ENCODER_FRAME - 1, SAMPLES_PER_ENCODER_FRAME, rounding_mode="floor")
    return -(-int(n_samples) // SAMPLES_PER_ENCODER_FRAME)


@lru_cache(maxsize=None)
def _mel_filters(n_mels: int, device: str) -> torch.Tensor:
    """Slaney-style mel filterbank [n_fft//2 + 1, n_mels], float32, the one WhisperFeatureExtractor uses."""
    from transformers.audio_utils import mel_filter_bank

    filters = mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=SAMPLE_RATE / 2,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(filters).to(device=device, dtype=torch.float32)


@lru_cache(maxsize=None)
def _hann_window(device: str) -> torch.Tensor:
    return torch.hann_window(N_FFT, device=device)


@lru_cache(maxsize=None)
def _white_noise_mel_gain_db(n_mels: int) -> float:
    """10·log10 of total mel power over the variance of white noise (sum of Hann² times the filterbank's
    total weight: E|X_k|² = σ²·Σw² in every STFT bin of white noise)."""
    return 10 * math.log10(float((_hann_window("cpu") ** 2).sum()) * float(_mel_filters(n_mels, "cpu").sum()))


def mel_level_db(mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Level of each clip read off Whisper's log-mel [B, n_mels, frames] (as log_mel_spectrogram makes it):
    10·log10 of the mean mel-band power over the clip's real frames (length / 160 of them, at least one),
    offset so that white noise reads its RMS level in dBFS. -> [B] float32, dB.

    A gain of g dB moves it by g dB (the log-mel floor 80 dB under each clip's peak aside). Speech reads a
    few dB off its RMS level, depending on its spectrum (the Slaney filters weight bands unequally)."""
    frames = (lengths.to(mel.device).long() // HOP_LENGTH).clamp(1, mel.shape[-1])
    real = torch.arange(mel.shape[-1], device=mel.device)[None] < frames[:, None]  # [B, frames]
    ln_power = (mel.float() * 4.0 - 4.0) * math.log(10.0)  # undo (log10 + 4) / 4, natural log
    ln_power = ln_power.masked_fill(~real[:, None, :], -math.inf)
    ln_mean = torch.logsumexp(ln_power.flatten(1), dim=1) - torch.log(frames.float() * mel.shape[1])
    return 10 / math.log(10.0) * ln_mean + 10 * math.log10(mel.shape[1]) - _white_noise_mel_gain_db(mel.shape[1])


def log_mel_spectrogram(waves: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """Whisper's log-mel features of waves [B, T] (or [T]) at 16 kHz -> [B, n_mels, T // HOP_LENGTH] float32.

    Computed on waves.device. Matches transformers' WhisperFeatureExtractor for the same (already padded)
    samples: power STFT (n_fft 400, hop 160, Hann, centred, last frame dropped), Slaney mel filters,
    log10(max(x, 1e-10)), floor at each clip's max - 8, then (x + 4) / 4. Each clip's floor uses the
    whole of its row, padding included, exactly as the extractor does on a padded array.
    """
    squeeze = waves.dim() == 1
    if squeeze:
        waves = waves.unsqueeze(0)
    if waves.dim() != 2:
        raise ValueError(f"log_mel_spectrogram expects waves [B, T] or [T], got shape {tuple(waves.shape)}")
    waves = waves.to(torch.float32)
    device = str(waves.device)
    stft = torch.stft(waves, N_FFT, HOP_LENGTH, window=_hann_window(device), return_complex=True)
    power = (stft[..., :-1].abs() ** 2).contiguous()  # [B, 201, frames]
    mel = _mel_filters(n_mels, device).T @ power  # [B, n_mels, frames]
    log_spec = torch.clamp(mel, min=1e-10).log10()
    floor = log_spec.amax(dim=(1, 2), keepdim=True) - 8.0
    log_spec = (torch.maximum(log_spec, floor) + 4.0) / 4.0
    return log_spec[0] if squeeze else log_spec
