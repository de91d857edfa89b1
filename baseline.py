"""Fit the non-neural loudness baseline: handcrafted torchaudio features + closed-form ridge regression.

    python baseline.py --train train.jsonl --test test.jsonl --target rms --save baseline.json
    python evaluate.py --ckpt runs/exp/best --data test.jsonl --baseline baseline.json   # side by side

Targets are measured on each clip's decoded 16 kHz mono audio: rms = RMS level in dBFS, lufs = BS.1770
integrated loudness in LUFS. The regulariser λ is chosen on a held-out part of --train, then the model is
refit on all of it. The last line of stdout is one JSON object (intensity_rmse, intensity_mae in dB,
intensity_r, ...). Clips that fail to decode or have no measurable loudness are listed on stderr, skipped
and make the exit code 1; bad arguments or unreadable inputs exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys

TARGET_NAMES = {"rms": "rms_dbfs", "rms_dbfs": "rms_dbfs", "lufs": "lufs"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--train", required=True, metavar="MANIFEST", help="JSONL manifest of training clips")
    p.add_argument("--test", metavar="MANIFEST", help="JSONL manifest of test clips to score (optional)")
    p.add_argument("--target", required=True, choices=sorted(TARGET_NAMES),
                   help="what to predict: rms (dBFS) or lufs (BS.1770 integrated loudness)")
    p.add_argument("--save", metavar="FILE", help="write the fitted weights and feature statistics (JSON) here, "
                                                  "for evaluate.py --baseline")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split used to choose λ")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from whisper_mtl.baseline import clip_features, fit_ridge
    from whisper_mtl.data import read_manifest
    from whisper_mtl.loudness import UNITS
    from whisper_mtl.metrics import intensity_metrics

    target = TARGET_NAMES[args.target]
    try:
        train_clips = read_manifest(args.train)
        test_clips = read_manifest(args.test) if args.test else []
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    # Fit: features and targets of train (one batch of audio in memory at a time), λ chosen on a held-out
    # part, then refit on all of train.
    features, targets, _, skipped = clip_features(train_clips, target, progress=not args.no_progress)
    try:
        baseline = fit_ridge(features, targets, target, seed=args.seed)
    except ValueError as err:
        print(f"error: {args.train}: {err}", file=sys.stderr)
        return 2
    if args.save:
        baseline.save(args.save)
    summary = {"target": target, "unit": UNITS[target], "n_train": baseline.n_train,
               "ridge_lambda": baseline.ridge_lambda, "holdout_rmse": baseline.holdout_rmse}

    # Score the test clips.
    if test_clips:
        features, targets, _, test_skipped = clip_features(test_clips, target, progress=not args.no_progress)
        skipped += test_skipped
        scores = (intensity_metrics(targets, baseline.predict_features(features).tolist()) if targets
                  else {"n": 0, "rmse": None, "mae": None, "r": None})
        summary.update(n=scores["n"], intensity_rmse=scores["rmse"], intensity_mae=scores["mae"],
                       intensity_r=scores["r"])
    summary["n_skipped"] = len(skipped)
    if args.save:
        summary["saved"] = args.save
    print(json.dumps(summary))
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
