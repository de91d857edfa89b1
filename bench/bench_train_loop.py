"""Training-loop efficiency: is train.py's loop compute-bound?

Two figures, in one process, same model, same batch size, same precision:
  pure  - forward + backward + clip + AdamW step on batches collated beforehand and already on the device
          (the ceiling: nothing but the model's work);
  full  - train.py's own loop (train.train) through the real DataLoader, SpeechDataset (FLAC decoding,
          loudness targets) and SpeechCollator, timed per optimiser step by the loop itself
          (samples_per_s in OUT/metrics.jsonl, logged every step).
efficiency = median full samples/s / median pure samples/s (goal >= 0.95), plus the training samples/s.

    python bench/bench_train_loop.py                     # tiny.en, full fine-tune, batch 4, fp32
    python bench/bench_train_loop.py --freeze-encoder --steps 6
    python bench/bench_train_loop.py --amp --device cuda --batch-size 16

Prints one JSON line. The first step of each measurement is a warm-up and is left out.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import train as train_script  # noqa: E402
from whisper_mtl import training as T  # noqa: E402
from whisper_mtl.data import SpeechCollator, SpeechDataset, read_manifest  # noqa: E402
from whisper_mtl.model import WhisperMTL  # noqa: E402
from whisper_mtl.synth import synthesize_corpus  # noqa: E402


def pure_samples_per_s(args, train_jsonl: Path) -> list[float]:
    """Per-step samples/s of the model's work alone, on pre-collated device batches."""
    dev = torch.device(args.device)
    amp = T.amp_dtype(dev, args.amp)
    torch.manual_seed(0)
    model = WhisperMTL.from_pretrained(args.model)
    if args.freeze_encoder:
        model.freeze_encoder()
    model.to(dev).train()
    clips = read_manifest(train_jsonl)
    data = SpeechDataset(clips)
    collate = SpeechCollator(model.tokenizer, model.prefix_token_ids(), model.window_samples)
    batches = []
    for s in range(args.steps):
        idx = [(s * args.batch_size + i) % len(clips) for i in range(args.batch_size)]
        b = collate([data[i] for i in idx])
        batches.append({k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in b.items()})
    opt = torch.optim.AdamW(T.param_groups(model, 0.01, 1e-5), betas=(0.9, 0.98), eps=1e-6)
    rates = []
    for b in batches:
        t0 = time.perf_counter()
        n_tok = T.count_label_tokens(b["labels"])
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = model(b["waves"], b["lengths"], labels=b["labels"], intensity=b["intensity"])
            loss = T.accumulation_loss(out, n_tok, args.batch_size, n_tok, args.batch_size, 1.0, 1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        rates.append(args.batch_size / (time.perf_counter() - t0))
    return rates[1:]


def full_samples_per_s(args, train_jsonl: Path, out: Path) -> list[float]:
    """Per-step samples/s of train.py's loop (DataLoader + collator + transfer + the same step)."""
    argv = ["--model", args.model, "--train", str(train_jsonl), "--val", str(train_jsonl), "--out", str(out),
            "--batch-size", str(args.batch_size), "--max-steps", str(args.steps), "--log-every", "1",
            "--eval-every", "0", "--max-val-clips", "1", "--eval-max-tokens", "1", "--lr", "1e-5",
            "--num-workers", str(args.num_workers), "--device", args.device, "--warmup-steps", "0"]
    argv += ["--amp"] * args.amp + ["--freeze-encoder"] * args.freeze_encoder
    train_script.train(train_script.parse_args(argv))
    records = [json.loads(line) for line in (out / T.METRICS_FILE).read_text().splitlines()]
    return [r["samples_per_s"] for r in records if r.get("event") == "train"][1:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny.en", help="any name WhisperMTL.from_pretrained takes")
    p.add_argument("--batch-size", type=int, default=4, help="clips per step")
    p.add_argument("--steps", type=int, default=5, help="steps per measurement (the first is warm-up)")
    p.add_argument("--num-workers", type=int, default=1, help="DataLoader workers in the full loop")
    p.add_argument("--amp", action="store_true", help="autocast (bf16 on CPU)")
    p.add_argument("--freeze-encoder", action="store_true", help="train decoder + head only")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_train_loop-") as tmp:
        # enough training clips that the measured steps stay inside one epoch: each new epoch starts fresh
        # DataLoader workers, a cost that a real corpus (thousands of batches per epoch) spreads thin
        n = max(24, math.ceil((args.steps + 1) * args.batch_size / 0.8))
        corpus = ROOT / ".cache" / f"synth_{n}_seed0"
        train_jsonl = corpus / "train.jsonl"
        if not train_jsonl.exists():
            train_jsonl, _ = synthesize_corpus(corpus, n=n, seed=0, progress=False)
        pure = pure_samples_per_s(args, train_jsonl)
        full = full_samples_per_s(args, train_jsonl, Path(tmp) / "run")
    result = {
        "model": args.model, "device": args.device, "amp": args.amp, "freeze_encoder": args.freeze_encoder,
        "batch_size": args.batch_size, "threads": torch.get_num_threads(), "num_workers": args.num_workers,
        "pure_samples_per_s": round(statistics.median(pure), 3),
        "full_samples_per_s": round(statistics.median(full), 3),
        "efficiency": round(statistics.median(full) / statistics.median(pure), 3),
        "pure_runs": [round(r, 3) for r in pure], "full_runs": [round(r, 3) for r in full],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
