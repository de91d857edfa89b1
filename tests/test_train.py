"""train.py and whisper_mtl/training.py: gradient accumulation, torchrun, exact resume, amp, atomic
checkpoints, overfitting. All on the small random Whisper (10 s window) and the 24-clip synthetic corpus,
a few optimiser steps each, so the whole file stays well under two minutes of CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train as train_script
from whisper_mtl import training as T
from whisper_mtl.data import SpeechCollator, SpeechDataset, read_manifest, write_manifest
from whisper_mtl.model import WhisperMTL

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these models are tiny, and on a shared 2-core machine a second thread
    mostly spins waiting for a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_train(argv: list[str]) -> dict:
    """train.py in this process (no interpreter start-up, shared torch import)."""
    return train_script.train(train_script.parse_args(argv))


def base_args(random_whisper_dir, synth_corpus, out, **extra) -> list[str]:
    train_jsonl, test_jsonl = synth_corpus
    args = {"--model": random_whisper_dir, "--train": train_jsonl, "--val": test_jsonl, "--out": out,
            "--batch-size": 4, "--lr": 3e-3, "--warmup-steps": 1, "--num-workers": 0, "--eval-every": 0,
            "--max-val-clips": 2, "--eval-max-tokens": 4, "--eval-batch-size": 2, "--log-every": 1,
            "--device": "cpu", **extra}
    out_argv = []
    for k, v in args.items():
        out_argv += [k] if v is True else [k, str(v)]
    return out_argv


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """Every trained tensor of a saved run's last/ checkpoint (Whisper + intensity head)."""
    state = load_file(str(run_dir / T.LAST_DIR / "model.safetensors"))
    state.update({f"head.{k}": v for k, v in load_file(str(run_dir / T.LAST_DIR / "intensity_head.safetensors")).items()})
    return state


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / T.METRICS_FILE).read_text().splitlines()]


# --------------------------------------------------------------------------------------- pure pieces
def test_lr_schedule_warms_up_then_decays_to_floor():
    f = [T.lr_multiplier(s, warmup_steps=4, total_steps=20, min_ratio=0.1) for s in range(25)]
    assert 0 < f[0] < f[1] < f[2] < f[3] < f[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[4:], f[5:]))
    assert f[20] == pytest.approx(0.1) and f[24] == pytest.approx(0.1)


def test_amp_dtype_choice():
    assert T.amp_dtype("cpu", enabled=False) is None
    assert T.amp_dtype("cpu", enabled=True) == torch.bfloat16
    assert not T.needs_grad_scaler(torch.bfloat16) and T.needs_grad_scaler(torch.float16)


def test_sampler_shards_cover_the_single_process_batches_and_resume_mid_epoch():
    data = list(range(19))
    one = T.ResumableSampler(data, num_replicas=1, rank=0, seed=3)
    two = [T.ResumableSampler(data, num_replicas=2, rank=r, seed=3) for r in (0, 1)]
    for s in [one, *two]:
        s.set_epoch(5)
    single, r0, r1 = list(one), list(two[0]), list(two[1])
    # global micro-batch k of 4 clips = rank 0's and rank 1's k-th micro-batch of 2
    for k in range(len(r0) // 2):
        assert sorted(single[4 * k: 4 * k + 4]) == sorted(r0[2 * k: 2 * k + 2] + r1[2 * k: 2 * k + 2])
    one.set_start(6)
    assert list(one) == single[6:] and len(one) == len(single) - 6
    one.set_epoch(6)                      # a new epoch: new order, from the start
    assert len(list(one)) == 19 and list(one) != single


def test_best_checkpoint_order():
    assert T.is_better(10.0, 3.0, None)
    assert T.is_better(9.0, 9.0, (10.0, 1.0))
    assert T.is_better(10.0, 0.5, (10.0, 1.0)) and not T.is_better(10.0, 1.5, (10.0, 1.0))
    assert not T.is_better(10.0, None, (10.0, 1.0))


# ------------------------------------------------------------------------------ (b) accumulation
def _batch_grads(model, batches, world_size=1):
    model.zero_grad(set_to_none=True)
    tokens = [T.count_label_tokens(b["labels"]) for b in batches]
    clips = [b["labels"].shape[0] for b in batches]
    for b, n_tok, n_clip in zip(batches, tokens, clips):
        out = model(b["waves"], b["lengths"], labels=b["labels"], intensity=b["intensity"])
        T.accumulation_loss(out, n_tok, n_clip, sum(tokens), sum(clips), model.config.intensity_weight,
                            world_size).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_batch8_equals_batch4_times_accum2(random_whisper_dir, synth_corpus):
    torch.manual_seed(0)
    model = WhisperMTL.from_pretrained(random_whisper_dir, head_dropout=0.0)
    model.with_target_stats(-35.0, 10.0)
    model.train()
    clips = read_manifest(synth_corpus[0])[:8]
    items = [SpeechDataset(clips)[i] for i in range(8)]
    collate = SpeechCollator(model.tokenizer, model.prefix_token_ids(), model.window_samples)
    full = collate(items)
    halves = [collate(items[:4]), collate(items[4:])]
    t0, t1 = (T.count_label_tokens(h["labels"]) for h in halves)
    assert t0 != t1, "the two halves must differ in token count, or the test cannot tell weightings apart"
    g_full = _batch_grads(model, [full])
    g_acc = _batch_grads(model, halves)
    assert g_full.keys() == g_acc.keys() and len(g_full) > 10
    for name in g_full:
        torch.testing.assert_close(g_acc[name], g_full[name], rtol=1e-4, atol=1e-7, msg=name)
    # the naive "mean loss / accum" weighting gives a measurably different gradient
    model.zero_grad(set_to_none=True)
    for h in halves:
        (model(h["waves"], h["lengths"], labels=h["labels"], intensity=h["intensity"]).loss / 2).backward()
    naive = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert max(float((naive[n] - g_full[n]).abs().max()) for n in g_full) > 1e-5


# ------------------------------------------------------------------------------ encoder cache
def test_encoder_cache_gives_the_real_encoder_output(random_whisper_dir, synth_corpus):
    model = WhisperMTL.from_pretrained(random_whisper_dir, head_dropout=0.0).eval()
    clips = read_manifest(synth_corpus[0])[:3]
    collate = SpeechCollator(model.tokenizer, model.prefix_token_ids(), model.window_samples)
    b = collate([SpeechDataset(clips)[i] for i in range(3)])
    with torch.no_grad():
        ref = model(b["waves"], b["lengths"], labels=b["labels"], intensity=b["intensity"])
    with pytest.raises(ValueError, match="frozen encoder"):
        T.EncoderCache(model).attach()
    model.freeze_encoder()
    cache = T.EncoderCache(model).attach()
    with torch.no_grad():
        first = model(b["waves"], b["lengths"], labels=b["labels"], intensity=b["intensity"])
        order = torch.tensor([2, 0, 1])          # another batch order: served from the cache
        again = model(b["waves"][order], b["lengths"][order], labels=b["labels"][order], intensity=b["intensity"][order])
    assert (cache.misses, cache.hits) == (3, 3)
    torch.testing.assert_close(first.logits, ref.logits)
    torch.testing.assert_close(again.logits, ref.logits[order])
    torch.testing.assert_close(again.intensity_db, ref.intensity_db[order])
    cache.detach()
    assert "encode_with_level" not in model.__dict__


# --------------------------------------------------------------------------- (d) exact resume
def test_resume_is_exact(random_whisper_dir, synth_corpus, tmp_path):
    # dropout on and gain augmentation on: resume must restore RNG streams and the data position;
    # 19 clips / batch 4 = 4 micro-batches per epoch, so the stop (step 3) is mid-epoch and the run
    # crosses an epoch boundary after it.
    common = {"--max-steps": 6, "--gain-aug": 6, "--head-dropout": 0.3}
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_train(base_args(random_whisper_dir, synth_corpus, straight, **common))
    out = run_train(base_args(random_whisper_dir, synth_corpus, split, **common, **{"--stop-after": 3}))
    assert out == {"stopped_at": 3}
    state = T.load_checkpoint(split)[1]
    assert (state["step"], state["epoch"], state["micro_in_epoch"]) == (3, 0, 3)
    run_train(["--resume", str(split)])
    assert max_abs_diff(weights(straight), weights(split)) <= 1e-6
    a, b = T.load_checkpoint(straight)[1], T.load_checkpoint(split)[1]
    assert (a["step"], a["epoch"], a["micro_in_epoch"]) == (b["step"], b["epoch"], b["micro_in_epoch"]) == (6, 1, 2)
    losses = lambda d: [(m["step"], round(m["asr_loss"], 5)) for m in metrics(d) if m["event"] == "train"]
    assert losses(straight) == losses(split)
    assert (straight / T.BEST_DIR / "whisper_mtl.json").is_file()


def test_resume_keeps_saved_flags_unless_given_again(tmp_path, random_whisper_dir, synth_corpus):
    run = tmp_path / "run"
    run_train(base_args(random_whisper_dir, synth_corpus, run, **{"--max-steps": 2, "--stop-after": 1,
                                                                   "--lr": 1e-3}))
    args = train_script.parse_args(["--resume", str(run), "--max-steps", "5"])
    assert (args.lr, args.max_steps, args.stop_after, args.out) == (1e-3, 5, 0, run)


# ------------------------------------------------------------------------------ (e) amp on CPU
def test_amp_runs_on_cpu(random_whisper_dir, synth_corpus, tmp_path):
    out = tmp_path / "amp"
    run_train(base_args(random_whisper_dir, synth_corpus, out, **{"--max-steps": 2, "--amp": True}))
    records = metrics(out)
    assert records[0]["amp"] == "torch.bfloat16"
    train_records = [r for r in records if r["event"] == "train"]
    assert len(train_records) == 2
    assert all(torch.isfinite(torch.tensor([r["asr_loss"], r["intensity_loss"]])).all() for r in train_records)
    assert records[-1]["event"] == "eval" and records[-1]["step"] == 2


# --------------------------------------------------------------------- (f) atomic checkpoints
def test_interrupted_checkpoint_write_leaves_previous_loadable(random_whisper_dir, tmp_path, monkeypatch):
    model = WhisperMTL.from_pretrained(random_whisper_dir)
    T.save_checkpoint(tmp_path, model, {"step": 1})
    real_save = torch.save

    def dies_half_way(obj, path, *a, **k):      # writes some bytes, then the process "dies"
        Path(path).write_bytes(b"\x80\x02partial")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        T.save_checkpoint(tmp_path, model, {"step": 2})
    monkeypatch.setattr(torch, "save", real_save)
    ckpt, state = T.load_checkpoint(tmp_path)
    assert ckpt == tmp_path / T.LAST_DIR and state == {"step": 1}
    WhisperMTL.from_pretrained(ckpt)              # the model files load too

    # killed between the two renames: last/ is gone, last.old/ is complete and is used
    real_replace = os.replace
    calls = []

    def dies_on_second_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between renames")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        T.save_checkpoint(tmp_path, model, {"step": 3})
    monkeypatch.setattr(os, "replace", real_replace)
    assert not (tmp_path / T.LAST_DIR).exists()
    ckpt, state = T.load_checkpoint(tmp_path)
    assert state == {"step": 1} and ckpt.name == T.LAST_DIR + ".old"
    # the next save recovers the normal layout
    T.save_checkpoint(tmp_path, model, {"step": 4})
    assert T.load_checkpoint(tmp_path) == (tmp_path / T.LAST_DIR, {"step": 4})
    assert sorted(p.name for p in tmp_path.iterdir()) == [T.LAST_DIR]


def test_resume_without_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(T.CheckpointError, match=str(tmp_path)):
        T.load_checkpoint(tmp_path)


# ------------------------------------------------------------------------------ (a) overfitting
def test_overfits_eight_clips(tiny_en_dir, synth_corpus, tmp_path):
    """tiny.en with a frozen, cached encoder memorises 8 clips: WER 0 and intensity RMSE < 0.5 dB on
    them. The head is warmed up alone on the cached encoder features, then everything trains together."""
    clips = read_manifest(synth_corpus[0])[:8]
    eight = tmp_path / "eight.jsonl"
    write_manifest(eight, clips)
    out = tmp_path / "overfit"
    result = run_train(["--model", str(tiny_en_dir), "--train", str(eight), "--val", str(eight), "--out", str(out),
                        "--batch-size", "4", "--max-steps", "16", "--lr", "3e-4", "--head-lr", "1e-3",
                        "--head-warmup-steps", "400", "--head-warmup-lr", "1e-2",
                        "--warmup-steps", "0", "--head-dropout", "0",
                        "--freeze-encoder", "--cache-encoder", "--eval-every", "0", "--eval-max-tokens", "40",
                        "--num-workers", "0", "--log-every", "8", "--device", "cpu"])
    final = result["final"]
    assert final["n"] == 8
    assert final["wer"] == 0.0
    assert final["intensity_rmse"] < 0.5


# ------------------------------------------------------------------------------ (c) torchrun
def test_torchrun_two_processes_match_one_process(random_whisper_dir, synth_corpus, tmp_path):
    common = {"--max-steps": 3, "--head-dropout": 0.0, "--grad-accum": 2}
    one, two = tmp_path / "one", tmp_path / "two"
    run_train(base_args(random_whisper_dir, synth_corpus, one, **common))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train.py"), *base_args(random_whisper_dir, synth_corpus, two, **common)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert T.load_checkpoint(two)[1]["world_size"] == 2
    assert max_abs_diff(weights(one), weights(two)) <= 1e-5
    loss = lambda d: [round(m["asr_loss"], 4) for m in metrics(d) if m["event"] == "train"]
    assert loss(one) == loss(two)
