"""Fine-tune Whisper to transcribe speech and predict how loud the voice is, in one forward pass.

Read top to bottom: setup -> data -> model -> optimiser -> the loop (amp, gradient accumulation, DDP,
clipping, schedule) -> evaluation -> checkpoint. The reusable pieces live in whisper_mtl/training.py.

    python train.py --demo                                    # offline CPU demo: tiny.en on synthetic speech
    python train.py --amp --librispeech data/LibriSpeech      # whisper-small on one GPU
    python train.py --train train.jsonl --val dev.jsonl --model tiny.en --max-steps 2000 --amp
    torchrun --nproc_per_node=4 train.py --amp --librispeech data/LibriSpeech
    python train.py --resume runs/whisper-mtl                 # continue exactly where it stopped
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from whisper_mtl import training as T
from whisper_mtl.data import (ManifestError, SpeechCollator, SpeechDataset, filter_clips, librispeech_clips,
                              read_manifest)
from whisper_mtl.evaluation import evaluate_model
from whisper_mtl.fileio import atomic_write_text
from whisper_mtl.model import WhisperMTL
from whisper_mtl.pretrained import ModelSourceError

TARGET_NAMES = {"rms": "rms_dbfs", "lufs": "lufs"}       # --target flag -> loudness.TARGETS name
LIBRISPEECH_SPLITS = ("train-clean-100", "dev-clean")
LIBRISPEECH_HELP = ("download LibriSpeech from https://www.openslr.org/12 (train-clean-100.tar.gz and "
                    "dev-clean.tar.gz) and extract both into ROOT, or run: python -m whisper_mtl.download ROOT "
                    "--subset train-clean-100 --subset dev-clean")
# Flags that steer this one invocation only; never restored from a checkpoint's saved arguments.
PER_RUN_FLAGS = ("resume", "stop_after", "demo", "num_workers", "device")

# The demo: tiny.en on synthetic eSpeak speech, on 2 CPU cores, in under 10 minutes (README: train).
DEMO_DEFAULTS = dict(
    model="tiny.en", out="runs/demo", demo_clips=240, demo_sentences=8, freeze_encoder=False, cache_encoder=False,
    batch_size=8, grad_accum=1, epochs=2, lr=1e-4, head_lr=1e-2, warmup_steps=4, weight_decay=0.01,
    head_warmup_steps=0, head_warmup_lr=1e-2,
    eval_every=0, eval_first=True, eval_batch_size=16, eval_max_tokens=64, gain_aug=6.0, amp=False, num_workers=0,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default="openai/whisper-small",
                   help="hub id, transformers or CTranslate2 dir, saved WhisperMTL dir, or 'tiny.en' (bundled, offline)")
    g.add_argument("--train", type=Path, help="training manifest (JSONL: audio, text[, intensity])")
    g.add_argument("--val", type=Path, help="validation manifest, evaluated every --eval-every steps and at the end")
    g.add_argument("--librispeech", type=Path, metavar="ROOT",
                   help=f"train on LibriSpeech {LIBRISPEECH_SPLITS[0]}, validate on {LIBRISPEECH_SPLITS[1]} under ROOT")
    g.add_argument("--max-val-clips", type=int, default=0,
                   help="evaluate on the first N validation clips only (0 = all): faster in-training eval")
    g.add_argument("--target", choices=sorted(TARGET_NAMES), default="rms",
                   help="what the intensity head predicts: rms = RMS level in dBFS, lufs = BS.1770 integrated loudness")
    g.add_argument("--lambda", dest="intensity_weight", type=float, default=1.0,
                   help="weight of the intensity loss (MSE on the standardised target) next to the ASR cross-entropy")
    g.add_argument("--head-dropout", type=float, default=0.1, help="dropout inside the intensity head")
    g.add_argument("--gain-aug", type=float, default=0.0, metavar="DB",
                   help="random gain in ±DB dB per clip and epoch (target shifted to match); 0 = off")
    g.add_argument("--demo", action="store_true",
                   help="offline end-to-end demo: tiny.en + synthetic eSpeak corpus on CPU (see README)")
    g.add_argument("--demo-clips", type=int, default=DEMO_DEFAULTS["demo_clips"],
                   help="--demo only: clips to synthesise (20%% held out for testing)")
    g.add_argument("--demo-sentences", type=int, default=DEMO_DEFAULTS["demo_sentences"],
                   help="--demo only: each training clip reads 1..K sentences in one voice (test clips read one)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=float, default=3.0, help="passes over the training set (ignored with --max-steps)")
    o.add_argument("--max-steps", type=int, default=0, help="optimiser steps to train for (0 = use --epochs)")
    o.add_argument("--batch-size", type=int, default=16,
                   help="clips per micro-batch summed over all processes (each of N torchrun ranks takes 1/N)")
    o.add_argument("--grad-accum", type=int, default=1,
                   help="micro-batches per optimiser step: global batch = batch-size x grad-accum, whatever N")
    o.add_argument("--lr", type=float, default=1e-5, help="peak learning rate of AdamW")
    o.add_argument("--head-lr", type=float, default=None,
                   help="peak learning rate of the (randomly initialised) intensity head (default: --lr)")
    o.add_argument("--warmup-steps", type=int, default=500, help="linear LR warm-up steps (capped at 10%% of training)")
    o.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine decay ends at this fraction of the peak LR")
    o.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (matrices only)")
    o.add_argument("--grad-clip", type=float, default=1.0, help="clip the global gradient norm to this (0 = off)")
    o.add_argument("--amp", action="store_true",
                   help="autocast: bf16 where supported (CPU, Ampere+), else fp16 with a GradScaler")
    o.add_argument("--freeze-encoder", action="store_true", help="train the decoder and the head only")
    o.add_argument("--cache-encoder", action="store_true",
                   help="with --freeze-encoder: compute each clip's encoder output once and reuse it (small corpora)")
    o.add_argument("--head-warmup-steps", type=int, default=0,
                   help="before the loop, fit the new intensity head alone for N full-batch steps on pooled "
                        "encoder features of the training set (one no-grad encoder pass; free with --cache-encoder)")
    o.add_argument("--head-warmup-lr", type=float, default=1e-2, help="peak LR of that head warm-up")
    o.add_argument("--grad-checkpointing", action="store_true", help="recompute activations in backward: less memory")
    r = p.add_argument_group("run")
    r.add_argument("--out", type=Path, default=Path("runs/whisper-mtl"),
                   help="output folder: last/ (resumable), best/ (best WER), metrics.jsonl")
    r.add_argument("--resume", type=Path, metavar="OUT",
                   help="continue the run in OUT exactly where it stopped (its saved flags apply unless given again)")
    r.add_argument("--eval-every", type=int, default=1000, help="evaluate (and checkpoint) every N steps; 0 = at the end only")
    r.add_argument("--eval-first", action="store_true", help="also evaluate before the first step (zero-shot baseline)")
    r.add_argument("--eval-batch-size", type=int, default=16, help="clips per evaluation batch")
    r.add_argument("--eval-max-tokens", type=int, default=0,
                   help="cap on generated tokens per clip in evaluation (0 = the decoder's limit)")
    r.add_argument("--save-every", type=int, default=0, help="also write last/ every N steps (0 = at evaluations only)")
    r.add_argument("--stop-after", type=int, default=0,
                   help="leave after N optimiser steps in this invocation, checkpoint written (pre-emptible jobs)")
    r.add_argument("--log-every", type=int, default=10, help="log loss, LR and samples/s every N steps")
    r.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes per rank (decoding audio)")
    r.add_argument("--seed", type=int, default=0, help="seed for shuffling, augmentation, head init and dropout")
    r.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse flags; --demo changes the defaults; --resume restores the run's saved flags, except those
    given again on this command line (e.g. a larger --max-steps)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if "--demo" in argv:
        parser.set_defaults(**DEMO_DEFAULTS)
    args = parser.parse_args(argv)
    if args.resume is None:
        return args
    _, state = T.load_checkpoint(args.resume)
    for action in parser._actions:                  # which flags were given explicitly?
        action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(argv))
    saved = {k: v for k, v in state["args"].items() if k not in PER_RUN_FLAGS}
    merged = {**vars(args), **saved, **given}
    merged["out"] = Path(merged["out"]) if "out" in given else Path(args.resume)
    return argparse.Namespace(**merged)


def load_clips(args) -> tuple[list, list]:
    """(train clips, validation clips) from --train/--val manifests or --librispeech ROOT."""
    if args.librispeech is not None:
        if not args.librispeech.is_dir():
            sys.exit(f"error: {args.librispeech}: no such folder; {LIBRISPEECH_HELP}")
        try:
            return tuple(librispeech_clips(args.librispeech, s) for s in LIBRISPEECH_SPLITS)
        except (FileNotFoundError, ValueError) as e:
            sys.exit(f"error: {e}; {LIBRISPEECH_HELP}")
    if args.train is None or args.val is None:
        sys.exit("error: give --train and --val manifests, --librispeech ROOT, or --demo")
    return read_manifest(args.train), read_manifest(args.val)


def train(args) -> dict:
    """Run (or resume) one training job; returns the final evaluation summary (main rank)."""
    # ---- setup: processes, device, precision, seeds
    info = T.setup_distributed(args.device)
    is_main = info.is_main
    dev = info.device
    amp = T.amp_dtype(dev, args.amp)
    if args.batch_size % info.world_size:
        sys.exit(f"error: --batch-size {args.batch_size} is not divisible by the {info.world_size} processes")
    rank_batch = args.batch_size // info.world_size
    T.seed_everything(args.seed)               # same head init and dropout stream on every rank
    target = TARGET_NAMES[args.target]
    out_dir = Path(args.out)
    log = T.MetricsLogger(out_dir / T.METRICS_FILE, enabled=is_main)
    say = print if is_main else (lambda *a, **k: None)
    resume_state = T.load_checkpoint(args.resume)[1] if args.resume else None

    train_clips, val_clips = load_clips(args)       # first: a wrong path fails before any download
    say(f"train: {len(train_clips)} clips, val: {len(val_clips)} clips")

    # ---- model: pretrained Whisper + intensity head (from last/ when resuming)
    source = T.find_checkpoint(args.resume) if args.resume else args.model
    model = WhisperMTL.from_pretrained(source, target=target, intensity_weight=args.intensity_weight,
                                       head_dropout=args.head_dropout)
    if args.freeze_encoder:
        model.freeze_encoder()
    if args.grad_checkpointing:
        model.enable_gradient_checkpointing()
    model.to(dev)

    # ---- data: manifests -> trainable clips -> per-rank shards of each epoch's shuffle
    train_clips, _ = filter_clips(train_clips, model.tokenizer, model.window_samples, target,
                                  prefix_ids=model.prefix_token_ids(), verbose=is_main)
    if args.max_val_clips:
        val_clips = val_clips[: args.max_val_clips]
    train_set = SpeechDataset(train_clips, target=target, gain_db=args.gain_aug, seed=args.seed)
    sampler = T.ResumableSampler(train_set, num_replicas=info.world_size, rank=info.rank, seed=args.seed)
    collate = SpeechCollator(model.tokenizer, model.prefix_token_ids(), model.window_samples)
    loader = DataLoader(train_set, batch_size=rank_batch, sampler=sampler, collate_fn=collate, drop_last=True,
                        num_workers=args.num_workers, pin_memory=dev.type == "cuda",
                        # its own generator: each new iterator draws a worker seed, and drawing it from the
                        # global RNG would shift the dropout stream on resume
                        generator=torch.Generator().manual_seed(args.seed))
    micro_per_epoch = len(sampler) // rank_batch
    if micro_per_epoch < 1:
        sys.exit(f"error: {len(train_clips)} training clips do not fill one batch of {args.batch_size}")
    max_steps = args.max_steps or max(1, int(args.epochs * micro_per_epoch) // args.grad_accum)
    warmup = min(args.warmup_steps, max_steps // 10)

    # ---- intensity standardisation: mean/std of the training targets (kept from the checkpoint on resume)
    if resume_state is None:
        mean, std = T.target_stats(train_set, seed=args.seed)
        model.with_target_stats(mean, std, target)
    say(f"target {target}: mean {model.config.target_mean:.2f} dB, std {model.config.target_std:.2f} dB")

    # ---- optimiser, LR schedule, loss scaler (fp16 only), DDP wrapper, encoder cache
    optimizer = torch.optim.AdamW(T.param_groups(model, args.weight_decay, args.lr, args.head_lr),
                                  betas=(0.9, 0.98), eps=1e-6, fused=dev.type == "cuda")
    scheduler = T.make_scheduler(optimizer, warmup, max_steps, args.min_lr_ratio)
    scaler = torch.amp.GradScaler(dev.type, enabled=T.needs_grad_scaler(amp))
    cache = T.EncoderCache(model).attach() if args.cache_encoder else None

    # ---- head warm-up on a fresh run: fit the random head on fixed encoder features first (fills the cache)
    if resume_state is None and args.head_warmup_steps:
        t0 = time.perf_counter()
        sampler.set_epoch(0)
        feats, targets = T.pooled_features(model, loader, dev, amp)
        rmse = T.fit_head(model, feats, targets, args.head_warmup_steps, args.head_warmup_lr)
        say(f"head warm-up: {len(feats)} clips, {args.head_warmup_steps} steps, fitted RMSE {rmse:.2f} dB "
            f"({time.perf_counter() - t0:.0f} s)")
        log.log({"event": "head_warmup", "clips": len(feats), "rmse_db": rmse, "seconds": time.perf_counter() - t0})
    # DDP after the warm-up: wrapping broadcasts rank 0's weights, so every rank starts identical
    ddp = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None) \
        if info.distributed else model
    step, epoch, micro_in_epoch, skipped_steps, samples_seen = 0, 0, 0, 0, 0
    best = None
    if resume_state is not None:             # exact resume: every piece of state, then this rank's RNGs
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        scaler.load_state_dict(resume_state["scaler"])
        step, epoch, micro_in_epoch = resume_state["step"], resume_state["epoch"], resume_state["micro_in_epoch"]
        skipped_steps, samples_seen, best = (resume_state["skipped_steps"], resume_state["samples_seen"],
                                             resume_state["best"])
        T.set_rng_state(resume_state["rng"][info.rank])
        say(f"resumed from {T.find_checkpoint(args.resume)} at step {step} (epoch {epoch}, micro-batch {micro_in_epoch})")

    def micro_batches():
        """Endless stream of this rank's micro-batches, epoch after epoch, from the saved data position."""
        nonlocal epoch, micro_in_epoch
        while True:
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            sampler.set_start(micro_in_epoch * rank_batch)
            for batch in loader:
                micro_in_epoch += 1
                yield batch
            epoch, micro_in_epoch = epoch + 1, 0

    def evaluate_and_checkpoint() -> dict | None:
        """Validation WER/RMSE (main rank, batched one-encoder-pass path), best/ by WER then RMSE, last/."""
        nonlocal best
        summary = None
        if is_main:
            result = evaluate_model(model, val_clips, batch_size=args.eval_batch_size, target=target,
                                    max_new_tokens=args.eval_max_tokens or None)
            summary = {"step": step, "epoch": epoch, **result.summary()}
            log.log({"event": "eval", **summary})
            rmse = "n/a (head not trained yet)" if result.intensity_rmse is None else f"{result.intensity_rmse:.2f} dB"
            tqdm.write(f"step {step}: val WER {result.wer:.2f} %, intensity RMSE {rmse}")
            if T.is_better(result.wer, result.intensity_rmse, best):
                best = (result.wer, result.intensity_rmse)
                model.save_pretrained(out_dir / T.BEST_DIR)
        save_checkpoint()
        return summary

    def save_checkpoint():
        rng = T.gather_rng_states(info)          # collective: every rank takes part
        if is_main:
            T.save_checkpoint(out_dir, model, {
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "step": step, "epoch": epoch, "micro_in_epoch": micro_in_epoch,
                "skipped_steps": skipped_steps, "samples_seen": samples_seen, "best": best, "rng": rng,
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "world_size": info.world_size})
        T.barrier(info)

    # ---- the loop: one optimiser step = grad_accum micro-batches on every rank
    say(f"training {max_steps} steps: {args.batch_size} x {args.grad_accum} clips per step on "
        f"{info.world_size} process(es), {dev}, amp={amp}, trainable params "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.1f} M")
    log.log({"event": "start", "max_steps": max_steps, "world_size": info.world_size,
             "global_batch": args.batch_size * args.grad_accum, "amp": str(amp), "resumed_at": step})
    stream = micro_batches()
    steps_this_run = 0
    window = {"ce": 0.0, "tokens": 0.0, "se_db": 0.0, "se": 0.0, "clips": 0.0, "time": 0.0}
    initial = evaluate_and_checkpoint() if args.eval_first and step == 0 else None
    model.update_config(head_trained=True)       # from here on the head's predictions mean something
    bar = tqdm(total=max_steps, initial=step, desc="train", unit="step", disable=not is_main, file=sys.stderr)
    model.train()
    if args.freeze_encoder:
        model.whisper.model.encoder.eval()    # frozen = deterministic: no dropout (and cacheable)
    t_loop = time.perf_counter()
    while step < max_steps:
        t0 = time.perf_counter()
        # fetch the whole accumulation window first: the loss is normalised by its total token count
        batches = [next(stream) for _ in range(args.grad_accum)]
        n_tokens = [T.count_label_tokens(b["labels"]) for b in batches]
        n_clips = [b["labels"].shape[0] for b in batches]
        tokens_total, clips_total = T.all_reduce_sum([sum(n_tokens), sum(n_clips)], info)
        for i, batch in enumerate(batches):
            last_micro = i == len(batches) - 1
            # DDP: all-reduce gradients only on the last micro-step
            sync = nullcontext() if (last_micro or not info.distributed) else ddp.no_sync()
            with sync:
                with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                    out = ddp(batch["waves"].to(dev, non_blocking=True), batch["lengths"].to(dev),
                              labels=batch["labels"].to(dev), intensity=batch["intensity"].to(dev))
                    loss = T.accumulation_loss(out, n_tokens[i], n_clips[i], tokens_total, clips_total,
                                               model.config.intensity_weight, info.world_size)
                scaler.scale(loss).backward()
            # running sums as device tensors: no host sync per micro-step
            window["ce"] += out.asr_loss.detach().float() * n_tokens[i]
            window["tokens"] += n_tokens[i]
            window["se"] += out.intensity_loss.detach().float() * n_clips[i]
            window["se_db"] += ((out.intensity_db.detach().float() - batch["intensity"].to(dev)) ** 2).sum()
            window["clips"] += n_clips[i]
        # unscale -> clip -> step -> schedule (not after an fp16 overflow step) -> zero_grad
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip or math.inf)
        scale_before = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        if scaler.is_enabled() and scaler.get_scale() < scale_before:
            skipped_steps += 1                   # inf/NaN gradients: step skipped, LR schedule held
        else:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        steps_this_run += 1
        samples_seen += int(clips_total)
        window["time"] += time.perf_counter() - t0
        bar.update(1)

        # ---- log: losses summed over ranks, per token / per clip
        if step % args.log_every == 0 or step == max_steps:
            ce, tok, se, se_db, clips = T.all_reduce_sum(
                [float(window[k]) for k in ("ce", "tokens", "se", "se_db", "clips")], info)
            record = {"event": "train", "step": step, "epoch": epoch, "asr_loss": ce / tok,
                      "intensity_loss": se / clips, "train_rmse_db": math.sqrt(se_db / clips),
                      "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                      "samples_per_s": clips / max(window["time"], 1e-9), "skipped_steps": skipped_steps}
            log.log(record)
            bar.set_postfix(loss=f"{ce / tok + model.config.intensity_weight * se / clips:.3f}",
                            lr=f"{record['lr']:.2e}", sps=f"{record['samples_per_s']:.1f}")
            window = dict.fromkeys(window, 0.0)

        # ---- evaluate + checkpoint
        if args.eval_every and step % args.eval_every == 0 and step < max_steps:
            evaluate_and_checkpoint()
            model.train()
            if args.freeze_encoder:
                model.whisper.model.encoder.eval()
        elif args.save_every and step % args.save_every == 0:
            save_checkpoint()
        if args.stop_after and steps_this_run >= args.stop_after and step < max_steps:
            save_checkpoint()
            say(f"stopped after {steps_this_run} steps at step {step}; continue with: python train.py --resume {out_dir}")
            bar.close()
            if cache is not None:
                cache.detach()
            return {"stopped_at": step}
    bar.close()
    train_seconds = time.perf_counter() - t_loop        # the loop only (evaluations excluded)
    final = evaluate_and_checkpoint()
    if cache is not None:
        cache.detach()
    say(json.dumps({"final": final, "train_seconds": round(train_seconds, 1), "best_dir": str(out_dir / T.BEST_DIR)}))
    return {"initial": initial, "final": final, "train_seconds": train_seconds}


def demo(args) -> dict:
    """Offline end-to-end: bundled tiny.en, synthetic corpus, zero-shot WER, fine-tune, held-out WER."""
    from whisper_mtl.pretrained import resolve_model
    from whisper_mtl.synth import synthesize_corpus

    t_start = time.perf_counter()
    out_dir = Path(args.out)
    # ---- model: convert the bundled tiny.en once (cached)
    args.model = resolve_model(args.model)
    # ---- data: a synthetic eSpeak corpus; its test sentences use templates never seen in training
    data_dir = out_dir / "data"
    train_jsonl, test_jsonl = data_dir / "train.jsonl", data_dir / "test.jsonl"
    corpus = {"n": args.demo_clips, "seed": args.seed, "train_sentences": args.demo_sentences}
    made_with = data_dir / "corpus.json"          # reuse the corpus only if it was made with these settings
    if not (train_jsonl.exists() and test_jsonl.exists() and made_with.exists()
            and json.loads(made_with.read_text()) == corpus):
        train_jsonl, test_jsonl = synthesize_corpus(data_dir, **corpus)
        atomic_write_text(made_with, json.dumps(corpus) + "\n")
    args.train, args.val = train_jsonl, test_jsonl
    # ---- fine-tune ASR and the intensity head together; evaluated on the held-out split before
    # (zero-shot: tiny.en as released) and after; best/ saved
    run = train(args)
    zero_shot, final = run["initial"], run["final"]
    result = {
        "zero_shot_wer": round(zero_shot["wer"], 2), "wer": round(final["wer"], 2),
        "intensity_rmse": None if final["intensity_rmse"] is None else round(final["intensity_rmse"], 3),
        "unit": final.get("unit"), "n_train": len(read_manifest(train_jsonl)), "n_test": final["n"],
        "train_seconds": round(run["train_seconds"], 1), "total_seconds": round(time.perf_counter() - t_start, 1),
        "best_dir": str(out_dir / T.BEST_DIR),
        "try_next": f"python infer.py --ckpt {out_dir / T.BEST_DIR} {read_manifest(test_jsonl)[0].audio}",
    }
    print(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> None:
    try:
        args = parse_args(argv)
        if args.demo:
            demo(args)
        else:
            train(args)
    except (ManifestError, T.CheckpointError, ModelSourceError) as e:   # bad input: one line, no traceback
        sys.exit(f"error: {e}")
    finally:
        T.cleanup_distributed()


if __name__ == "__main__":
    main()
