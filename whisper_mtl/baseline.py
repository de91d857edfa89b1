"""A non-neural intensity baseline: handcrafted torchaudio features and a closed-form ridge regression.

What a learned intensity head has to beat. Features (``FEATURE_NAMES``), all computed batched on
padded waves with padding masked out, from one power spectrogram per batch (25 ms frames, 10 ms hop):
  - level: global RMS (dBFS) and frame log-energy statistics (dB: mean, std, 10/50/90th percentile, max),
    fraction of frames within 20 dB of the loudest (a crude stand-in for BS.1770 gating), log duration;
  - timbre: mean and standard deviation of N_MFCC MFCCs;
  - spectral shape: centroid and 85 % roll-off (kHz), log spectral flatness, mean and std each.
Features are standardised with the training set's mean/std; ridge weights are solved in closed form
(float64) for each λ in RIDGE_LAMBDAS, λ is chosen on a held-out part of train, then refit on all of train.
The global level (UNPENALISED) is not shrunk: both targets move 1:1 with gain.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torchaudio.functional as AF
from tqdm import tqdm

from whisper_mtl.fileio import atomic_write_text
from whisper_mtl.audio import HOP_LENGTH, N_FFT, SAMPLE_RATE, AudioError, load_audio
from whisper_mtl.loudness import UNITS, LoudnessError, measure

N_MELS = 40
N_MFCC = 20
ROLLOFF = 0.85                     # roll-off: frequency below which 85 % of a frame's energy lies
EPS = 1e-10                        # power floor (-100 dB): digital silence stays finite
GATE_DB = 20.0                     # "active" frames: within 20 dB of the clip's loudest frame
RIDGE_LAMBDAS = tuple(10.0 ** k for k in range(-4, 5))   # searched on standardised features
HOLDOUT_FRACTION = 0.2             # part of train held out to choose λ
UNPENALISED = ("rms_dbfs",)        # the global level: its weight is never shrunk (see _solve_ridge)
FORMAT_VERSION = 1

FEATURE_NAMES = tuple(
    ["rms_dbfs", "frame_db_mean", "frame_db_std", "frame_db_p10", "frame_db_p50", "frame_db_p90",
     "frame_db_max", "active_fraction", "log_duration_s"]
    + [f"mfcc{k}_mean" for k in range(N_MFCC)]
    + [f"mfcc{k}_std" for k in range(N_MFCC)]
    + ["centroid_khz_mean", "centroid_khz_std", "rolloff_khz_mean", "rolloff_khz_std",
       "log_flatness_mean", "log_flatness_std"]
)

_WINDOW = torch.hann_window(N_FFT)
_MEL = AF.melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE, norm="slaney", mel_scale="slaney")
_DCT = AF.create_dct(N_MFCC, N_MELS, norm="ortho")            # [n_mels, n_mfcc]
_FREQS_KHZ = torch.linspace(0, SAMPLE_RATE / 2000, N_FFT // 2 + 1)


def n_frames(lengths: torch.Tensor) -> torch.Tensor:
    """Number of whole 25 ms analysis frames in each clip (no centre padding), at least 1."""
    return ((lengths - N_FFT) // HOP_LENGTH + 1).clamp(min=1)


def _masked_mean_std(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, C, F] (or [B, F]) with mask [B, 1, F] (or [B, F]) -> mean and population std over the real
    frames (last dim), each [B, C] (or [B])."""
    m = mask.to(x.dtype)
    count = m.sum(-1)
    mean = (x * m).sum(-1) / count
    var = ((x - mean.unsqueeze(-1)).square_() * m).sum(-1) / count
    return mean, var.clamp_(min=0).sqrt_()


def extract_features(waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Handcrafted features of a padded batch.

    waves: float32 [B, T] 16 kHz, zero-padded after each clip's ``lengths`` [B] samples (>= N_FFT).
    Returns float32 [B, len(FEATURE_NAMES)]; each row depends only on its own clip (batching-invariant).
    """
    if waves.dim() != 2 or lengths.shape != (waves.shape[0],):
        raise ValueError(f"expected waves [B, T] and lengths [B], got {tuple(waves.shape)} and {tuple(lengths.shape)}")
    if int(lengths.min()) < N_FFT:
        raise ValueError(f"clips must hold at least {N_FFT} samples ({N_FFT / SAMPLE_RATE * 1000:.0f} ms)")
    waves = waves[:, : int(lengths.max())].float()
    lengths = lengths.to(torch.long)
    frames = n_frames(lengths)
    mask = torch.arange(int(frames.max())).unsqueeze(0) < frames.unsqueeze(1)          # [B, F]

    # Level: exact RMS over the real samples, and per-frame mean power from a running sum of squares
    # (float64: a difference of two large sums), far cheaper than squaring every overlapping frame.
    squares = torch.nn.functional.pad(waves.double().square(), (1, 0)).cumsum(1)            # [B, T + 1]
    power_total = squares.gather(1, lengths.unsqueeze(1)).squeeze(1) / lengths
    rms_db = 10 * torch.log10(power_total.clamp(min=EPS)).float()
    starts = torch.arange(mask.shape[1]) * HOP_LENGTH
    frame_power = ((squares[:, starts + N_FFT] - squares[:, starts]) / N_FFT).float()
    frame_db = 10 * torch.log10(frame_power.clamp(min=EPS))                               # [B, F]
    db_mean, db_std = _masked_mean_std(frame_db, mask)
    masked_db = frame_db.masked_fill(~mask, math.nan)
    q = torch.nanquantile(masked_db, torch.tensor([0.1, 0.5, 0.9]), dim=1)              # [3, B]
    db_max = frame_db.masked_fill(~mask, -math.inf).amax(1)
    active = ((frame_db >= (db_max - GATE_DB).unsqueeze(1)) & mask).sum(1) / frames
    log_duration = torch.log(lengths.float() / SAMPLE_RATE)

    # One power spectrogram for everything spectral, frequency-major as torch.stft returns it:
    # [B, n_freq, F]; re·re + im·im in one fused op (|X|**2 costs a square root and a second pass).
    stft = torch.view_as_real(torch.stft(waves, N_FFT, HOP_LENGTH, window=_WINDOW, center=False,
                                         return_complex=True)[..., : mask.shape[1]])
    spec = torch.addcmul(stft[..., 0] * stft[..., 0], stft[..., 1], stft[..., 1])
    frame_mask = mask.unsqueeze(1)                                                      # [B, 1, F]
    log_mel = 10 * torch.log10((_MEL.T @ spec).clamp_(min=EPS))                       # [B, n_mels, F] dB
    mfcc = _DCT.T @ log_mel                                                             # [B, n_mfcc, F]
    mfcc_mean, mfcc_std = _masked_mean_std(mfcc, frame_mask)

    total = spec.sum(1).clamp_(min=EPS)                                                 # [B, F]
    centroid = (_FREQS_KHZ @ spec) / total
    below = (spec.cumsum(1) < ROLLOFF * total.unsqueeze(1)).sum(1)                     # bins under the roll-off
    rolloff = _FREQS_KHZ[below.clamp_(max=_FREQS_KHZ.numel() - 1)]
    log_flatness = spec.clamp(min=EPS).log_().mean(1) - torch.log(total / spec.shape[1])  # <= 0; 0 = white noise
    spectral = [s for x in (centroid, rolloff, log_flatness) for s in _masked_mean_std(x, mask)]

    level = [rms_db, db_mean, db_std, q[0], q[1], q[2], db_max, active.float(), log_duration]
    out = torch.cat([torch.stack(level, 1), mfcc_mean, mfcc_std, torch.stack(spectral, 1)], 1)
    return out.float()


def features_of_waves(waves: list[torch.Tensor], batch_size: int = 64) -> torch.Tensor:
    """Features of 1-D waves of any lengths: sorted by length, padded per batch. Returns [N, F] in input order."""
    out = torch.empty(len(waves), len(FEATURE_NAMES))
    order = sorted(range(len(waves)), key=lambda i: waves[i].numel())
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        lengths = torch.tensor([waves[i].numel() for i in idx])
        padded = torch.zeros(len(idx), int(lengths.max()))
        for row, i in enumerate(idx):
            padded[row, : lengths[row]] = waves[i]
        out[idx] = extract_features(padded, lengths)
    return out


def clip_features(clips: list, target: str | None, batch_size: int = 64,
                  progress: bool = True) -> tuple[torch.Tensor, list[float | None], list[int], list[str]]:
    """Decode clips a batch at a time (longest first, so a batch holds similar lengths) and extract their
    features, never holding more than one batch of audio. Returns (features [N, F], targets (dB of
    ``target``; a clip's external ``intensity`` label wins, as in training; None when ``target`` is None),
    indices of the kept clips in ``clips``, skipped "<path>: <cause>" lines), rows in input order.

    Clips that fail to decode, are shorter than one 25 ms frame or whose target cannot be measured are
    listed on stderr and skipped.
    """
    from whisper_mtl.evaluation import clip_seconds

    order = sorted(range(len(clips)), key=lambda i: -clip_seconds(clips[i]))
    found: dict[int, tuple[torch.Tensor, float | None]] = {}
    skipped = []
    bar = tqdm(total=len(clips), desc="features", unit="clip", disable=not progress, file=sys.stderr)
    for start in range(0, len(order), batch_size):
        waves, kept, values = [], [], []
        for i in order[start : start + batch_size]:
            clip = clips[i]
            try:
                wave = load_audio(clip.audio)
                if wave.numel() < N_FFT:
                    raise AudioError(clip.audio, f"{wave.numel()} samples is shorter than one {N_FFT}-sample frame")
                value = clip.intensity if clip.intensity is not None or target is None else measure(wave, target)
            except (AudioError, LoudnessError) as err:
                line = str(err) if isinstance(err, AudioError) else f"{clip.audio}: {err}"
                skipped.append(line)
                print(f"skipped {line}", file=sys.stderr)
                continue
            waves.append(wave)
            kept.append(i)
            values.append(value)
        if waves:
            for i, row, value in zip(kept, features_of_waves(waves, batch_size), values):
                found[i] = (row, value)
        bar.update(len(order[start : start + batch_size]))
    bar.close()
    kept = sorted(found)
    features = torch.stack([found[i][0] for i in kept]) if kept else torch.empty(0, len(FEATURE_NAMES))
    return features, [found[i][1] for i in kept], kept, skipped


def _solve_ridge(x: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
    """Ridge on standardised, centred x [N, F] (float64): weights [F] and intercept (the mean of y).

    The intercept and the UNPENALISED features are not shrunk: both targets move 1:1 with the clip's
    gain, so shrinking the global level's weight would only bias every prediction toward the mean, and a
    strong λ then falls back to "level + offset" instead of to "the mean of train"."""
    y_mean = float(y.mean())
    penalty = torch.tensor([0.0 if name in UNPENALISED else 1.0 for name in FEATURE_NAMES], dtype=x.dtype)
    gram = x.T @ x + lam * torch.diag(penalty)
    weights = torch.linalg.solve(gram, x.T @ (y - y_mean))
    return weights, y_mean


def _standardise_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = x.mean(0), x.std(0, unbiased=False)
    return mean, torch.where(std > 1e-8, std, torch.ones_like(std))   # constant features: weight ~0, no NaN


@dataclass(frozen=True)
class RidgeBaseline:
    """A fitted baseline: predicts ``target`` (dB) as ``bias + ((features - mean) / std) @ weights``."""

    target: str
    feature_names: tuple[str, ...]
    mean: torch.Tensor          # [F] feature means on train
    std: torch.Tensor           # [F] feature standard deviations on train
    weights: torch.Tensor       # [F] dB per standard deviation
    bias: float                 # dB
    ridge_lambda: float
    holdout_rmse: float         # dB, of the chosen λ on the held-out part of train
    n_train: int

    def predict_features(self, features: torch.Tensor) -> torch.Tensor:
        """features [N, F] -> predicted target [N] (dB)."""
        x = (features.double() - self.mean.double()) / self.std.double()
        return (x @ self.weights.double() + self.bias).float()

    def predict_waves(self, waves: list[torch.Tensor]) -> list[float]:
        """1-D 16 kHz waves -> predicted target (dB) per wave."""
        return self.predict_features(features_of_waves(waves)).tolist()

    def save(self, path) -> Path:
        """Write weights and feature statistics as JSON, atomically (temp file + rename)."""
        path = Path(path)
        payload = {
            "format": "whisper_mtl.baseline", "version": FORMAT_VERSION, "target": self.target,
            "unit": UNITS[self.target], "feature_names": list(self.feature_names), "mean": self.mean.tolist(),
            "std": self.std.tolist(), "weights": self.weights.tolist(), "bias": self.bias,
            "ridge_lambda": self.ridge_lambda, "holdout_rmse": self.holdout_rmse, "n_train": self.n_train,
        }
        atomic_write_text(path, json.dumps(payload, indent=1))
        return path

    @classmethod
    def load(cls, path) -> RidgeBaseline:
        """Read a file written by ``save``; ValueError "<path>: <cause>" if it is not one or its features differ."""
        try:
            payload = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: cannot read baseline ({err.__class__.__name__}: {err})") from None
        if not isinstance(payload, dict) or payload.get("format") != "whisper_mtl.baseline":
            raise ValueError(f"{path}: not a whisper_mtl baseline file")
        if payload.get("version") != FORMAT_VERSION or payload.get("feature_names") != list(FEATURE_NAMES):
            raise ValueError(f"{path}: baseline was saved with other features; refit it with baseline.py")
        t = lambda key: torch.tensor(payload[key], dtype=torch.float64)  # noqa: E731
        return cls(target=payload["target"], feature_names=tuple(payload["feature_names"]), mean=t("mean"),
                   std=t("std"), weights=t("weights"), bias=float(payload["bias"]),
                   ridge_lambda=float(payload["ridge_lambda"]), holdout_rmse=float(payload["holdout_rmse"]),
                   n_train=int(payload["n_train"]))


def fit_ridge(features: torch.Tensor, targets, target: str, seed: int = 0,
              lambdas=RIDGE_LAMBDAS, holdout_fraction: float = HOLDOUT_FRACTION) -> RidgeBaseline:
    """Fit the baseline on features [N, len(FEATURE_NAMES)] and targets [N] (dB of ``target``).

    λ is chosen by RMSE on a seeded random ``holdout_fraction`` of the rows (standardisation and weights fit
    on the rest), then weights are refit on all rows with that λ. Needs at least 4 rows.
    """
    if target not in UNITS:
        raise ValueError(f"unknown intensity target {target!r}; expected one of {sorted(UNITS)}")
    x = features.double()
    y = torch.as_tensor(targets, dtype=torch.float64)
    n = x.shape[0]
    if x.dim() != 2 or x.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"expected features [N, {len(FEATURE_NAMES)}] (extract_features), got {tuple(x.shape)}")
    if n < 4 or y.shape != (n,):
        raise ValueError(f"need at least 4 training clips with one target each, got {n} clips and {tuple(y.shape)} targets")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_hold = max(1, round(n * holdout_fraction))
    hold, fit = perm[:n_hold], perm[n_hold:]
    mean, std = _standardise_stats(x[fit])
    x_fit, x_hold = (x[fit] - mean) / std, (x[hold] - mean) / std
    scores = []
    for lam in lambdas:
        w, b = _solve_ridge(x_fit, y[fit], lam)
        scores.append(float(((x_hold @ w + b - y[hold]) ** 2).mean().sqrt()))
    best = min(range(len(lambdas)), key=lambda k: scores[k])
    mean, std = _standardise_stats(x)
    weights, bias = _solve_ridge((x - mean) / std, y, lambdas[best])
    return RidgeBaseline(target=target, feature_names=tuple(FEATURE_NAMES), mean=mean, std=std, weights=weights,
                         bias=bias, ridge_lambda=float(lambdas[best]), holdout_rmse=scores[best], n_train=n)
