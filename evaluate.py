"""Evaluate a checkpoint: WER/CER (%) and intensity errors (dB) on a manifest or a LibriSpeech split.

    python evaluate.py --ckpt tiny.en --data test.jsonl                       # the bundled model, zero-shot
    python evaluate.py --ckpt runs/exp/best --librispeech /data/LibriSpeech --split test-clean \\
        --out rows.jsonl --baseline baseline.json

The last line of stdout is one JSON object (n, n_skipped, wer, wer_raw, cer, intensity_rmse/mae/r,
target, unit, samples_per_s, ...). Clips that fail to decode are listed on stderr, skipped and make the
exit code 1; bad arguments or unreadable inputs exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from whisper_mtl.fileio import write_jsonl


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--ckpt", required=True,
                   help="model to evaluate: a train.py checkpoint dir, a transformers Whisper dir, a CTranslate2 dir, "
                        "a hub id (needs internet) or 'tiny.en' (bundled, offline)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="MANIFEST", help="JSONL manifest with one {audio, text} object per line")
    src.add_argument("--librispeech", metavar="ROOT", help="LibriSpeech root folder (holds test-clean/, ...)")
    p.add_argument("--split", default="test-clean", help="LibriSpeech split to evaluate with --librispeech")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N clips (quick checks)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per batch (one encoder pass each)")
    p.add_argument("--beams", type=int, default=1, help="beam width; 1 = greedy decoding")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="cap on generated tokens per clip (default: the decoder's context)")
    p.add_argument("--target", choices=("rms_dbfs", "lufs"), default=None,
                   help="loudness to score against, in dBFS or LUFS (default: what the checkpoint was trained on)")
    p.add_argument("--out", metavar="FILE", help="write one JSON row per clip (path, reference, hypothesis, "
                                                 "target, predicted, avg_logprob, ...) to this JSONL file")
    p.add_argument("--baseline", metavar="FILE", help="a baseline.py --save file: its intensity scores on the same "
                                                      "clips are added under \"baseline\"")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = p.parse_args(argv)
    for name in ("batch_size", "beams"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from whisper_mtl.baseline import RidgeBaseline, clip_features
    from whisper_mtl.data import Clip, librispeech_clips, read_manifest
    from whisper_mtl.evaluation import evaluate_model
    from whisper_mtl.metrics import intensity_metrics

    # Inputs: clips, the optional baseline, then the model (the slow part) last, so input errors come first.
    try:
        clips = read_manifest(args.data) if args.data else librispeech_clips(args.librispeech, args.split)
        baseline = RidgeBaseline.load(args.baseline) if args.baseline else None
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if baseline is not None and args.target and baseline.target != args.target:
        print(f"error: {args.baseline}: baseline predicts {baseline.target}, evaluation target is {args.target}",
              file=sys.stderr)
        return 2
    if args.limit:
        clips = clips[: args.limit]
    if not clips:
        print(f"error: {args.data or args.librispeech + '/' + args.split}: no clips", file=sys.stderr)
        return 2
    from whisper_mtl.model import WhisperMTL  # transformers: a slow import, after the cheap input checks

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = WhisperMTL.from_pretrained(args.ckpt).to(device)
    except (OSError, ValueError) as err:
        print(f"error: {args.ckpt}: cannot load model ({err})", file=sys.stderr)
        return 2
    target = args.target or model.config.target
    if baseline is not None and baseline.target != target:
        print(f"error: {args.baseline}: baseline predicts {baseline.target}, evaluation target is {target}",
              file=sys.stderr)
        return 2

    # Evaluate: batched, one encoder pass per batch.
    try:
        result = evaluate_model(model, clips, batch_size=args.batch_size, num_beams=args.beams, target=target,
                                progress=not args.no_progress, max_new_tokens=args.max_new_tokens)
    except ValueError as err:  # nothing could be evaluated
        print(f"error: {err}", file=sys.stderr)
        return 1
    summary = {"ckpt": args.ckpt, "data": args.data or f"{args.librispeech}/{args.split}", **result.summary()}
    rows = [dict(r) for r in result.rows]

    # Baseline: the same clips, the same measured targets, side by side.
    if baseline is not None:
        scored = [r for r in rows if r["target"] is not None]
        features, _, kept, _ = clip_features([Clip(audio=r["path"], text=r["reference"]) for r in scored], None,
                                             progress=not args.no_progress)
        predicted = baseline.predict_features(features).tolist()
        for j, value in zip(kept, predicted):
            scored[j]["baseline_predicted"] = value
        scores = intensity_metrics([scored[j]["target"] for j in kept], predicted) if kept else {}
        summary["baseline"] = {"intensity_rmse": scores.get("rmse"), "intensity_mae": scores.get("mae"),
                               "intensity_r": scores.get("r"), "n": len(kept)}

    if args.out:
        write_jsonl(args.out, rows)
    print(json.dumps(summary))
    return 1 if result.n_skipped else 0


if __name__ == "__main__":
    sys.exit(main())
