"""The reusable pieces of the training loop; the loop itself lives, visible, in train.py.

- amp_dtype: which autocast dtype `--amp` means on a device (bf16 where supported, else fp16 + GradScaler).
- lr_multiplier / make_scheduler: linear warm-up then cosine decay to a floor.
- setup_distributed / DistInfo: torchrun-aware process setup (NCCL on GPU, gloo on CPU).
- ResumableSampler: DistributedSampler (per-epoch shuffle, per-rank shard) that can start mid-epoch.
- accumulation_loss: weights micro-batch losses so gradient accumulation and DDP give the gradient of one
  big batch (token-weighted ASR loss, sample-weighted intensity loss).
- save_checkpoint / load_checkpoint: OUT/last/ written atomically (temp dir + rename), holding the model
  (WhisperMTL.save_pretrained layout) and training_state.pt (optimiser, scheduler, scaler, step, epoch,
  data position, per-rank RNG states, args).
- MetricsLogger: one JSON object per line in OUT/metrics.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

LAST_DIR = "last"                     # OUT/last: the resumable checkpoint
BEST_DIR = "best"                     # OUT/best: the best model by WER (ties by intensity RMSE)
STATE_FILE = "training_state.pt"      # inside OUT/last, next to the model files
METRICS_FILE = "metrics.jsonl"
_TMP_SUFFIX = ".tmp"                  # OUT/last.tmp: being written, never read
_OLD_SUFFIX = ".old"                  # OUT/last.old: the previous checkpoint during the swap


class CheckpointError(ValueError):
    """A checkpoint directory is missing or unreadable (message: "<path>: <cause>")."""


# --------------------------------------------------------------------------------------------- precision
def amp_dtype(device: torch.device | str, enabled: bool) -> torch.dtype | None:
    """The autocast dtype `--amp` means on `device`: None when disabled; bf16 on CPU and on GPUs that
    support it; fp16 otherwise (which then needs a GradScaler, see `needs_grad_scaler`)."""
    if not enabled:
        return None
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def needs_grad_scaler(dtype: torch.dtype | None) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and does not."""
    return dtype == torch.float16


# ------------------------------------------------------------------------------------------- LR schedule
def lr_multiplier(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> float:
    """LR factor for optimiser step `step` (0-based): linear warm-up over `warmup_steps` (starting at
    1/(warmup+1), never 0, so step 0 already learns), then cosine decay from 1 to `min_ratio` at
    `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                   min_ratio: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over `lr_multiplier`; its state (the step count) is saved in checkpoints."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(lr_multiplier, warmup_steps=warmup_steps, total_steps=total_steps,
                           min_ratio=min_ratio))


def param_groups(model: torch.nn.Module, weight_decay: float, lr: float,
                 head_lr: float | None = None) -> list[dict]:
    """AdamW parameter groups over the trainable parameters: weight decay on matrices only (not on
    biases, LayerNorm gains or embeddings' 1-D params); the intensity head optionally at its own LR
    (it starts from random init while the rest is pretrained)."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = name.startswith("intensity_head.")
        groups.setdefault((is_head, p.ndim >= 2), []).append(p)
    out = []
    for (is_head, decay), params in sorted(groups.items()):
        group_lr = head_lr if (is_head and head_lr is not None) else lr
        out.append({"params": params, "weight_decay": weight_decay if decay else 0.0, "lr": group_lr})
    return out


# ----------------------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) job."""
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str | None = None) -> DistInfo:
    """Join the torchrun job if launched by torchrun (env RANK/WORLD_SIZE set), else a single process.
    NCCL with one GPU per local rank when CUDA is available, gloo on CPU. `device` ("cpu", "cuda")
    forces the device type; default: CUDA when available."""
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum floats over ranks (identity in a single process); float64 so counts stay exact."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64,
                     device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


class ResumableSampler(DistributedSampler):
    """DistributedSampler (a fresh shuffle per epoch from (seed, epoch), rank r takes every
    world_size-th index from r, tail dropped so every rank has the same count) that can skip the first
    `start` samples of this rank's epoch: exact resume without decoding the skipped audio.

    With drop_last, rank r's i-th sample is perm[r + i * world_size], so micro-batch k over all ranks is
    the same set of clips whatever world_size is, when the global batch is fixed."""

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=True)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip this rank's first `start` samples of the current epoch (reset to 0 by set_epoch)."""
        self.start = start

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


# ------------------------------------------------------------------------------------ accumulation loss
def accumulation_loss(out, n_tokens: int, n_samples: int, n_tokens_total: float, n_samples_total: float,
                      intensity_weight: float, world_size: int) -> torch.Tensor:
    """The loss to backpropagate for one micro-batch so that the gradients summed over all micro-steps
    and ranks equal the gradient of the mean loss over the whole optimiser step's batch.

    `out` is the model's MTLOutput: out.asr_loss is the mean cross-entropy over this micro-batch's
    `n_tokens` label tokens, out.intensity_loss the mean squared error of the standardised target over
    its `n_samples` clips. Dividing a micro-batch *mean* by the accumulation count would over-weight the
    tokens of micro-batches with short transcripts; instead asr = CE_sum / label tokens in the whole step
    and intensity = SE_sum / clips in the whole step. DDP averages gradients over ranks, hence the
    factor world_size."""
    asr = out.asr_loss * (n_tokens / n_tokens_total)
    intensity = out.intensity_loss * (n_samples / n_samples_total)
    return (asr + intensity_weight * intensity) * world_size


def count_label_tokens(labels: torch.Tensor) -> int:
    """Label tokens that count in the loss (labels != -100) in a collated [B, L] label tensor."""
    return int((labels != -100).sum().item())


# -------------------------------------------------------------------------------------- encoder cache
class EncoderCache:
    """Memoise a frozen encoder: the encoder's output for a clip is computed once and reused in every
    later epoch and evaluation (on CPU the encoder over Whisper's 30 s window costs ~4x the decoder's
    forward + backward, so with a frozen encoder this makes each epoch after the first ~4x cheaper).

    Keyed by the clip's real samples (a 128-bit BLAKE2 hash of wave[:length] plus length; the model
    zeroes samples past `length`, so padding cannot change the output), hence correct under any
    shuffling or batching, and a gain-augmented copy of a clip is simply a new entry. Only valid while
    the encoder is frozen and deterministic (no dropout, no SpecAugment): `attach` checks the first.
    Memory: frames x d_model floats per clip (tiny.en: 1500 x 384 x 4 B = 2.3 MB)."""

    def __init__(self, model):
        self.model = model
        self.store: dict[tuple[bytes, int], torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(wave: torch.Tensor, length: int) -> tuple[bytes, int]:
        real = wave[:length].detach().to("cpu", torch.float32).contiguous().numpy()
        return hashlib.blake2b(real.tobytes(), digest_size=16).digest(), int(length)

    def encode_with_level(self, waves: torch.Tensor, lengths: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """Drop-in for WhisperMTL.encode_with_level on [B, window_samples] waves: cached rows + one real
        encoder pass over the rows not seen before."""
        encode = type(self.model).encode_with_level
        if waves.dim() != 2 or lengths is None:        # log-mel input or no lengths: not cacheable
            return encode(self.model, waves, lengths)
        keys = [self.key(w, int(n)) for w, n in zip(waves, lengths.tolist())]
        missing = [i for i, k in enumerate(keys) if k not in self.store]
        if missing:
            idx = torch.tensor(missing, device=waves.device)
            with torch.no_grad():
                hidden, level = encode(self.model, waves[idx], lengths.to(waves.device)[idx])
            for i, row, lv in zip(missing, hidden, level):
                self.store[keys[i]] = (row.detach().float(), lv.detach().float())
        self.misses += len(set(keys[i] for i in missing))
        self.hits += len(keys) - len(missing)
        rows = [self.store[k] for k in keys]
        return (torch.stack([h for h, _ in rows]).to(self.model.device),
                torch.stack([lv for _, lv in rows]).to(self.model.device))

    def attach(self) -> "EncoderCache":
        """Route model.encode_with_level (used by forward, predict and encode) through the cache."""
        if any(p.requires_grad for p in self.model.whisper.model.encoder.parameters()):
            raise ValueError("the encoder cache needs a frozen encoder (--freeze-encoder)")
        self.model.encode_with_level = self.encode_with_level
        return self

    def detach(self) -> None:
        self.model.__dict__.pop("encode_with_level", None)


# ------------------------------------------------------------------------------------ head warm start
def pooled_features(model, loader, device: torch.device, amp: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One no-grad pass over `loader`: (head inputs [N, d + 1] float32, targets [N] dB). With an
    EncoderCache attached this pass also fills the cache, so it costs nothing extra."""
    feats, targets = [], []
    with torch.no_grad(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        for batch in loader:
            lengths = batch["lengths"].to(device)
            hidden, level_db = model.encode_with_level(batch["waves"].to(device), lengths)
            feats.append(model.head_input(hidden, level_db, lengths))
            targets.append(batch["intensity"].float())
    return torch.cat(feats), torch.cat(targets).to(device)


def fit_head(model, features: torch.Tensor, targets_db: torch.Tensor, steps: int, lr: float) -> float:
    """Warm-start the freshly initialised intensity head on fixed head inputs (`steps` full-batch
    AdamW steps on the head alone, MSE on the standardised target), before fine-tuning everything
    together ("linear probing, then fine-tuning", Kumar et al. 2022: a random head's large early
    gradients would otherwise pull the pretrained features around). With a frozen encoder this equals
    many joint epochs of head training, for the price of a few milliseconds per step.
    Returns the fitted RMSE on these features (dB)."""
    head = model.intensity_head
    cfg = model.config
    target = (targets_db - cfg.target_mean) / cfg.target_std
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, partial(lr_multiplier, warmup_steps=0, total_steps=steps, min_ratio=0.01))
    was_training = head.training
    head.train()
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(head(features), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    head.train(was_training)
    with torch.no_grad():
        head.eval()
        rmse = float(((head(features) - target) ** 2).mean().sqrt() * cfg.target_std)
        head.train(was_training)
    return rmse


# ----------------------------------------------------------------------------------------- target stats
def target_stats(dataset, max_items: int = 512, seed: int = 0) -> tuple[float, float]:
    """(mean, std) in the target's unit (dBFS or LUFS) over up to `max_items` training items, as the
    dataset serves them (gain augmentation included): the intensity head's standardisation."""
    n = len(dataset)
    if n == 0:
        raise ValueError("target_stats: empty training set")
    rng = random.Random(seed)
    idx = list(range(n)) if n <= max_items else rng.sample(range(n), max_items)
    values = np.array([float(dataset[i]["target"]) for i in idx], dtype=np.float64)
    std = float(values.std()) if len(values) > 1 else 0.0
    return float(values.mean()), max(std, 1.0)    # floor: a constant target must not divide by ~0


# ------------------------------------------------------------------------------------------- RNG states
def rng_state() -> dict:
    """Every RNG the loop touches (Python, NumPy, torch CPU, CUDA) for exact resume."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def gather_rng_states(info: DistInfo) -> list[dict]:
    """Every rank's RNG state, gathered to all ranks (each rank restores its own on resume)."""
    mine = rng_state()
    if not info.distributed:
        return [mine]
    states: list = [None] * info.world_size
    dist.all_gather_object(states, mine)
    return states


# ------------------------------------------------------------------------------------------ checkpoints
def _fsync_tree(root: Path) -> None:
    """Flush file contents and directory entries to disk so a rename after it publishes complete data."""
    for path in sorted(root.rglob("*")) + [root]:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def save_checkpoint(out_dir: str | Path, model, state: dict) -> Path:
    """Write OUT/last atomically: everything goes to OUT/last.tmp first, then the previous OUT/last is
    renamed to OUT/last.old, OUT/last.tmp to OUT/last, and last.old removed. A crash at any point leaves
    a complete checkpoint: OUT/last, or (between the two renames) OUT/last.old, which `find_checkpoint`
    falls back to. `model` is the unwrapped WhisperMTL; `state` a dict of picklable training state
    (optimizer/scheduler/scaler state_dicts, counters, RNG states, args)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final, tmp, old = out_dir / LAST_DIR, out_dir / (LAST_DIR + _TMP_SUFFIX), out_dir / (LAST_DIR + _OLD_SUFFIX)
    if tmp.exists():                       # a previous write died half-way: discard it
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    torch.save(state, tmp / STATE_FILE)
    _fsync_tree(tmp)
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_tree(out_dir)
    if old.exists():
        shutil.rmtree(old)
    return final


def find_checkpoint(out_dir: str | Path) -> Path:
    """The complete checkpoint dir under `out_dir` (OUT/last, else OUT/last.old if a crash hit between
    the two renames of `save_checkpoint`); `out_dir` may also be the checkpoint dir itself."""
    out_dir = Path(out_dir)
    for cand in (out_dir, out_dir / LAST_DIR, out_dir / (LAST_DIR + _OLD_SUFFIX)):
        if (cand / STATE_FILE).is_file():
            return cand
    raise CheckpointError(f"{out_dir}: no checkpoint to resume from (expected {out_dir / LAST_DIR / STATE_FILE})")


def load_checkpoint(out_dir: str | Path, map_location="cpu") -> tuple[Path, dict]:
    """(checkpoint dir holding the model files, training state dict) for `--resume OUT`."""
    ckpt = find_checkpoint(out_dir)
    try:
        state = torch.load(ckpt / STATE_FILE, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is "unreadable"
        raise CheckpointError(f"{ckpt / STATE_FILE}: unreadable checkpoint ({type(e).__name__}: {e})") from e
    return ckpt, state


# ---------------------------------------------------------------------------------------------- logging
class MetricsLogger:
    """Appends one JSON object per line to OUT/metrics.jsonl (main rank only), flushed per line so a
    crashed run keeps its history; every record gets wall-clock `time` (s since the epoch)."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        record = {**record, "time": round(time.time(), 3)}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def is_better(wer: float, rmse: float | None, best: tuple[float, float] | None) -> bool:
    """Best checkpoint order: lower WER, ties broken by lower intensity RMSE (None counts as +inf)."""
    key = (wer, math.inf if rmse is None else rmse)
    return best is None or key < tuple(best)
