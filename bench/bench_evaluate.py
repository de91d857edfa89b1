"""Benchmark evaluation throughput, and the baseline's feature extraction speed.

Same model (bundled tiny.en), same clips (synthetic eSpeak speech), same process, interleaved runs, medians:
  ours      evaluate_model: batches sorted by length, ONE encoder pass per batch shared by generate and
            the intensity head (WhisperMTL.predict).
  replaced  the method of the project this one replaces: each clip alone through WhisperFeatureExtractor,
            generate(max_new_tokens=225), then a second full forward pass (encoder + decoder) for intensity.
  pipeline  transformers' automatic-speech-recognition pipeline with its own batching, greedy (ASR only: it
            has no intensity head, so it does less work than the other two).
Baseline features: extract_features on the decoded clips (tiled to --feature-seconds of audio), timed on
one thread: × real time per core = audio seconds / CPU seconds.

    python bench/bench_evaluate.py                    # 16 clips, 3 runs: a few minutes on 2 cores
    python bench/bench_evaluate.py --clips 8 --runs 1 # quicker look

Prints a Markdown table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPLACED_MAX_NEW_TOKENS = 225  # the replaced project's generation cap


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=16, help="number of synthetic clips to evaluate")
    p.add_argument("--runs", type=int, default=3, help="timed runs per method (the median is reported)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size for ours and for the pipeline")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: stable timings on a shared machine)")
    p.add_argument("--max-new-tokens", type=int, default=REPLACED_MAX_NEW_TOKENS,
                   help="token cap for ours and the pipeline too (default: the replaced method's 225), so all "
                        "three stop a looping transcript at the same point and do the same work per clip")
    p.add_argument("--model", default="tiny.en", help="any name WhisperMTL.from_pretrained takes")
    p.add_argument("--device", default="cpu", help="cpu or cuda (fp32 either way)")
    p.add_argument("--feature-seconds", type=float, default=600.0,
                   help="seconds of audio the baseline feature extraction is timed on (clips tiled)")
    p.add_argument("--never-stops", action="store_true",
                   help="also time the replaced method generating all 225 tokens per clip, as it did in practice "
                        "(its model never emitted end-of-text); slow")
    p.add_argument("--corpus", type=Path, default=ROOT / ".cache" / "bench_synth_seed1",
                   help="where the synthetic clips are cached")
    return p.parse_args(argv)


def synthetic_clips(folder: Path, n: int):
    from whisper_mtl.data import read_manifest
    from whisper_mtl.synth import synthesize_corpus

    train, test = folder / "train.jsonl", folder / "test.jsonl"
    if not (train.exists() and test.exists()) or len(read_manifest(train)) + len(read_manifest(test)) < n:
        train, test = synthesize_corpus(folder, n=max(n, 16), seed=1, progress=False)
    return (read_manifest(train) + read_manifest(test))[:n]


def replaced_method(model, feature_extractor, clips, never_stops: bool = False):
    """Each clip alone: host-side features, generate with a 225-token cap, then a full second forward pass.
    never_stops: force all 225 tokens, as the replaced project's model did (it never learned end-of-text)."""
    from whisper_mtl.audio import load_audio

    texts, intensities = [], []
    with torch.no_grad():
        for clip in clips:
            wave = load_audio(clip.audio)
            feats = feature_extractor(wave.numpy(), sampling_rate=16_000, return_tensors="pt").input_features
            feats = feats.to(model.device)
            generated = model.whisper.generate(feats, max_new_tokens=REPLACED_MAX_NEW_TOKENS,
                                               min_new_tokens=REPLACED_MAX_NEW_TOKENS if never_stops else None)
            texts.append(model.tokenizer.decode(generated[0], skip_special_tokens=True).strip())
            out = model(feats, torch.tensor([wave.numel()]), labels=generated[:, 1:])  # encoder + decoder again
            intensities.append(float(out.intensity_db[0]))  # .item() per clip, as it did: a device sync
    return texts


def pipeline_method(asr, clips, batch_size, max_new_tokens):
    from whisper_mtl.audio import load_audio

    inputs = [{"raw": load_audio(c.audio).numpy(), "sampling_rate": 16_000} for c in clips]
    # num_beams=1: transformers 5's pipeline defaults Whisper to 5 beams; greedy like the other two methods.
    generate_kwargs = {"num_beams": 1, "max_new_tokens": max_new_tokens}
    return [o["text"].strip() for o in asr(inputs, batch_size=batch_size, generate_kwargs=generate_kwargs)]


def timed(fn):
    """(seconds, result); every method returns host-side text, so its GPU work is finished by then."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import WhisperFeatureExtractor, pipeline
    from transformers.utils import logging as hf_logging

    from whisper_mtl.audio import SAMPLE_RATE, load_audio
    from whisper_mtl.baseline import features_of_waves
    from whisper_mtl.evaluation import evaluate_model
    from whisper_mtl.metrics import asr_metrics
    from whisper_mtl.model import WhisperMTL

    hf_logging.set_verbosity_error()
    clips = synthetic_clips(args.corpus, args.clips)
    audio_s = sum(load_audio(c.audio).numel() for c in clips) / SAMPLE_RATE
    model = WhisperMTL.from_pretrained(args.model).to(args.device).eval()
    feature_extractor = WhisperFeatureExtractor(feature_size=model.n_mels)
    asr = pipeline("automatic-speech-recognition", model=model.whisper, tokenizer=model.tokenizer,
                   feature_extractor=feature_extractor, device=model.device)
    references = [c.text for c in clips]

    methods = {
        "ours": lambda cs: [r["hypothesis"] for r in
                            evaluate_model(model, cs, batch_size=args.batch_size, progress=False,
                                           max_new_tokens=args.max_new_tokens).rows],
        "replaced": lambda cs: replaced_method(model, feature_extractor, cs),
        "pipeline": lambda cs: pipeline_method(asr, cs, args.batch_size, args.max_new_tokens),
    }
    if args.never_stops:
        methods["replaced_225"] = lambda cs: replaced_method(model, feature_extractor, cs, never_stops=True)
    for fn in methods.values():  # warm-up on two clips: first-call allocations, lazy imports
        fn(clips[:2])
    times = {name: [] for name in methods}
    wer = {}
    for run in range(args.runs):  # interleaved, so load on the shared machine hits every method alike
        for name, fn in methods.items():
            seconds, texts = timed(lambda: fn(clips))
            times[name].append(seconds)
            wer[name] = asr_metrics(references, texts)["wer"]
            print(f"run {run + 1}/{args.runs} {name}: {seconds:.2f} s", file=sys.stderr)
    median = {name: statistics.median(t) for name, t in times.items()}

    # Baseline features: decoded audio tiled to --feature-seconds, one thread, median of 3.
    waves = [load_audio(c.audio) for c in clips]
    tiled, total = [], 0.0
    while total < args.feature_seconds:
        for w in waves:
            tiled.append(w)
            total += w.numel() / SAMPLE_RATE
    torch.set_num_threads(1)
    features_of_waves(tiled[:8])
    feature_s = statistics.median(timed(lambda: features_of_waves(tiled))[0] for _ in range(3))
    torch.set_num_threads(args.threads)

    result = {
        "model": str(args.model), "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "clips": len(clips), "audio_s": round(audio_s, 2), "runs": args.runs, "threads": args.threads,
        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
        "median_s": {k: round(v, 3) for k, v in median.items()},
        "clips_per_s": {k: round(len(clips) / v, 3) for k, v in median.items()},
        "wer_percent": {k: round(v, 2) for k, v in wer.items()},
        "speedup_vs_replaced": round(median["replaced"] / median["ours"], 2),
        "speedup_vs_pipeline": round(median["pipeline"] / median["ours"], 2),
        "baseline_features_x_realtime_per_core": round(total / feature_s, 1),
        "baseline_feature_audio_s": round(total, 1),
    }
    print(f"\n{len(clips)} clips, {audio_s:.1f} s of audio, {args.model} on {args.device}, {args.threads} thread(s), "
          f"median of {args.runs} runs\n")
    print("| method | median s | clips/s | WER % | ours is faster by |")
    print("|---|---|---|---|---|")
    for name in methods:
        print(f"| {name} | {median[name]:.2f} | {len(clips) / median[name]:.2f} | {wer[name]:.1f} | "
              f"{median[name] / median['ours']:.2f}× |")
    print(f"\nbaseline features: {result['baseline_features_x_realtime_per_core']}× real time per core "
          f"({total:.0f} s of audio)\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
