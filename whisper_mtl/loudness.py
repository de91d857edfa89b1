"""Loudness targets in dB: RMS level (dBFS) and ITU-R BS.1770-4 integrated loudness (LUFS).

What is measured: the mono 16 kHz float32 signal the model hears, i.e. `audio.load_audio`'s output (a stereo
file is measured after the mean-of-channels downmix, a 44.1 kHz file after resampling to 16 kHz), at
whatever gain augmentation the dataset applied. Full scale is ±1.0.

- `rms_dbfs`: 20·log10(sqrt(mean(x²))). A full-scale square wave is 0 dBFS, a full-scale sine −3.01 dBFS.
  Every sample counts (no gating, no weighting).
- `lufs`: BS.1770-4 integrated loudness (K-weighting, 400 ms blocks with 75 % overlap, −70 LUFS absolute
  gate, −10 LU relative gate) computed by pyloudnorm for a mono channel.

LUFS at 16 kHz: BS.1770 gives the K-weighting filter coefficients for 48 kHz only. pyloudnorm designs the
two biquads (high shelf +4 dB at 1.5 kHz, high pass at 38 Hz) for the signal's own rate from their analog
parameters (RBJ cookbook), so a 16 kHz clip is measured at 16 kHz without resampling; the shelf's top
octave is the one place the designs differ. ffmpeg's `ebur128` filter (an independent meter) also runs
at the input rate with its own bilinear design; tests/test_loudness.py checks that the two agree within
0.25 LU on tones, noise and speech-like bursts at 16 and 48 kHz (measured worst case: see README).

Nothing is clipped and no unit silently replaces another: undefined values raise `LoudnessError`
(digital silence for RMS; clips shorter than the 0.4 s gating block or entirely below the gates for
LUFS) instead of returning −inf or NaN.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .audio import SAMPLE_RATE

TARGETS = ("rms_dbfs", "lufs")
UNITS = {"rms_dbfs": "dBFS", "lufs": "LUFS"}
LUFS_BLOCK_SECONDS = 0.4  # BS.1770 gating block: shorter clips have no integrated loudness


class LoudnessError(ValueError):
    """The loudness of this signal is undefined (silence, too short, fully gated, non-finite samples)."""


def _mono_float64(wave) -> np.ndarray:
    """1-D float64 copy of a mono signal given as a Tensor or array-like; LoudnessError on bad input."""
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().to("cpu", torch.float64).numpy()
    x = np.asarray(wave, dtype=np.float64)
    if x.ndim != 1:
        raise LoudnessError(f"expected a mono 1-D signal, got shape {x.shape} (downmix first)")
    if x.size == 0:
        raise LoudnessError("empty signal (0 samples)")
    if not np.isfinite(x).all():
        raise LoudnessError("signal contains NaN or infinity")
    return x


def rms_dbfs(wave) -> float:
    """RMS level of a mono signal (Tensor [T] or array) in dBFS: 20·log10(RMS), full scale = ±1.0.

    Raises LoudnessError on digital silence (RMS 0: the level is −inf), empty or non-finite input.
    """
    x = _mono_float64(wave)
    mean_square = float(np.mean(np.square(x)))
    if mean_square == 0.0:
        raise LoudnessError("digital silence: RMS is 0, so its level in dBFS is -inf (undefined)")
    return 10.0 * math.log10(mean_square)


@lru_cache(maxsize=8)
def _meter(sample_rate: int):
    import pyloudnorm

    return pyloudnorm.Meter(sample_rate, block_size=LUFS_BLOCK_SECONDS)


def lufs(wave, sample_rate: int = SAMPLE_RATE) -> float:
    """ITU-R BS.1770-4 integrated loudness of a mono signal in LUFS (pyloudnorm, at `sample_rate` Hz).

    Raises LoudnessError if the clip is shorter than 0.4 s, if every gating block falls below the
    −70 LUFS absolute gate (silence, near-silence), or on empty or non-finite input.
    """
    x = _mono_float64(wave)
    if x.size < LUFS_BLOCK_SECONDS * sample_rate:
        raise LoudnessError(
            f"clip of {x.size / sample_rate:.3f} s is shorter than the {LUFS_BLOCK_SECONDS} s BS.1770 gating block"
        )
    value = float(_meter(int(sample_rate)).integrated_loudness(x))
    if not math.isfinite(value):
        raise LoudnessError("fully gated: every 400 ms block is below the -70 LUFS absolute gate (silence)")
    return value


def measure(wave, target: str, sample_rate: int = SAMPLE_RATE) -> float:
    """Loudness of a mono signal for a target name: "rms_dbfs" -> dBFS, "lufs" -> LUFS."""
    if target == "rms_dbfs":
        return rms_dbfs(wave)
    if target == "lufs":
        return lufs(wave, sample_rate)
    raise ValueError(f"unknown loudness target {target!r}; expected one of {TARGETS}")


def rms_dbfs_batch(waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """RMS level in dBFS of each row of waves [B, T] over its first lengths[b] samples -> float32 [B].

    Runs on waves.device and agrees with `rms_dbfs` on each row within 1e-4 dB. Raises LoudnessError naming
    the row on digital silence or a zero length (never returns −inf or NaN).
    """
    if waves.dim() != 2:
        raise ValueError(f"rms_dbfs_batch expects waves [B, T], got shape {tuple(waves.shape)}")
    lengths = torch.as_tensor(lengths, device=waves.device).long()
    if lengths.shape != waves.shape[:1]:
        raise ValueError(f"lengths {tuple(lengths.shape)} does not match batch size {waves.shape[0]}")
    if bool((lengths <= 0).any()) or bool((lengths > waves.shape[1]).any()):
        bad = int(((lengths <= 0) | (lengths > waves.shape[1])).nonzero()[0])
        raise LoudnessError(f"row {bad}: length {int(lengths[bad])} outside 1..{waves.shape[1]} samples")
    mask = torch.arange(waves.shape[1], device=waves.device)[None, :] < lengths[:, None]
    real = waves.to(torch.float32).masked_fill(~mask, 0.0)
    # float32 dot products (blocked summation: ~1e-6 dB from the float64 scalar path), then float64
    mean_square = torch.linalg.vecdot(real, real).to(torch.float64) / lengths
    if not bool(torch.isfinite(mean_square).all()):
        raise LoudnessError(f"row {int((~torch.isfinite(mean_square)).nonzero()[0])}: signal contains NaN or infinity")
    silent = mean_square == 0
    if bool(silent.any()):
        raise LoudnessError(f"row {int(silent.nonzero()[0])}: digital silence: RMS is 0, so its level is -inf")
    return (10.0 * torch.log10(mean_square)).to(torch.float32)


def measure_batch(waves: torch.Tensor, lengths: torch.Tensor, target: str, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """`measure` for each row of waves [B, T] over its first lengths[b] samples -> float32 [B] in the target's unit.

    RMS is computed on the device in one pass; LUFS row by row with `lufs` (BS.1770 gating is not a
    reduction). LoudnessError names the failing row.
    """
    if target == "rms_dbfs":
        return rms_dbfs_batch(waves, lengths)
    if target != "lufs":
        raise ValueError(f"unknown loudness target {target!r}; expected one of {TARGETS}")
    values = []
    for b, n in enumerate(torch.as_tensor(lengths).tolist()):
        try:
            values.append(lufs(waves[b, : int(n)], sample_rate))
        except LoudnessError as e:
            raise LoudnessError(f"row {b}: {e}") from None
    return torch.tensor(values, dtype=torch.float32, device=waves.device)
