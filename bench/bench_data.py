"""Data pipeline benchmark: memory of iterating the dataset, loudness-target throughput, synthesis speed.

    python bench/bench_data.py            # ~3 minutes on 2 cores; prints a JSON report (and a table on stderr)

1. Peak RSS while iterating SpeechDataset + SpeechCollator through a DataLoader over 1 000 and 10 000
   clips (manifests cycling over a synthetic corpus), each in a fresh process (whole-process ru_maxrss).
   Lazy decoding means the two must stay within 10 %.
2. Loudness-target throughput, one thread, in x real time per core (audio seconds / CPU seconds):
   rms_dbfs and lufs on decoded 16 kHz clips, next to decoding itself (load_audio) as the reference
   run in the same process; medians of several passes.
3. Synthesis speed of whisper_mtl.synth: clips/s and x real time for one worker process, and the
   wall time of the whole CLI making 1 000 clips with the default two workers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_child(manifest: str, model_dir: str) -> None:
    """Child process: iterate the whole dataset once through a DataLoader; print peak RSS (MiB)."""
    torch.set_num_threads(1)
    from transformers import AutoTokenizer

    from whisper_mtl.audio import N_SAMPLES
    from whisper_mtl.data import SpeechCollator, SpeechDataset, read_manifest

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    clips = read_manifest(manifest)
    dataset = SpeechDataset(clips, target="rms_dbfs", gain_db=6.0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=SpeechCollator(
        tokenizer, list(tokenizer.prefix_tokens), N_SAMPLES))
    start = time.perf_counter()
    n = sum(len(batch["texts"]) for batch in loader)
    seconds = time.perf_counter() - start
    print(json.dumps({"clips": n, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": seconds}))


def cycled_manifest(clips, n: int, path: Path) -> str:
    from whisper_mtl.data import Clip, write_manifest

    write_manifest(path, [Clip(clips[i % len(clips)].audio, clips[i % len(clips)].text) for i in range(n)])
    return str(path)


def cpu_rate(fn, waves, seconds_of_audio: float, repeats: int) -> float:
    """Median x real time per core of fn over all waves (process CPU time: robust to other load)."""
    rates = []
    for _ in range(repeats):
        start = time.process_time()
        for w in waves:
            fn(w)
        rates.append(seconds_of_audio / (time.process_time() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="dataset sizes for the RSS runs")
    parser.add_argument("--repeats", type=int, default=5, help="passes per throughput measurement (median)")
    parser.add_argument("--synth-n", type=int, default=1000, help="clips for the whole-CLI synthesis run")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from whisper_mtl.audio import SAMPLE_RATE, load_audio
    from whisper_mtl.data import read_manifest
    from whisper_mtl.loudness import lufs, rms_dbfs
    from whisper_mtl.pretrained import resolve_model
    from whisper_mtl.synth import synthesize_corpus

    os.environ.setdefault("WHISPER_MTL_CACHE", str(ROOT / ".cache" / "whisper_mtl"))
    report: dict = {"machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 3. Synthesis: in-process runs of 100 clips, one worker (median of 3), then the whole CLI.
        per_worker = []
        for r in range(3):
            start = time.perf_counter()
            train, _ = synthesize_corpus(tmp / f"s{r}", n=100, seed=r, progress=False, workers=1)
            wall = time.perf_counter() - start
            audio = sum(c.duration for c in read_manifest(train) + read_manifest(tmp / f"s{r}" / "test.jsonl"))
            per_worker.append((100 / wall, audio / wall))
        cli_start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "whisper_mtl.synth", str(tmp / "corpus"), "--n", str(args.synth_n),
                        "--quiet"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        cli_wall = time.perf_counter() - cli_start
        corpus = read_manifest(tmp / "corpus" / "train.jsonl") + read_manifest(tmp / "corpus" / "test.jsonl")
        corpus_hours = sum(c.duration for c in corpus) / 3600
        report["synthesis"] = {
            "one_worker_clips_per_s": round(statistics.median(p[0] for p in per_worker), 1),
            "one_worker_x_realtime": round(statistics.median(p[1] for p in per_worker), 1),
            "cli_clips": args.synth_n, "cli_wall_s": round(cli_wall, 1), "cli_audio_hours": round(corpus_hours, 2),
        }

        # 2. Loudness-target throughput on 200 decoded clips (decoding is the reference run).
        sample = corpus[:200]
        waves = [load_audio(c.audio) for c in sample]
        seconds = sum(w.shape[0] for w in waves) / SAMPLE_RATE
        decode = cpu_rate(lambda c: load_audio(c.audio), sample, seconds, args.repeats)
        rms = cpu_rate(rms_dbfs, waves, seconds, args.repeats)
        loud = cpu_rate(lufs, waves, seconds, args.repeats)
        report["targets_x_realtime_per_core"] = {
            "clips": len(waves), "audio_s": round(seconds, 1), "decode_flac_reference": round(decode),
            "rms_dbfs": round(rms), "lufs": round(loud),
            "rms_dbfs_vs_decode": round(rms / decode, 2), "lufs_vs_decode": round(loud / decode, 2),
        }

        # 1. Peak RSS of iterating the dataset, each size in a fresh process.
        model_dir = resolve_model("tiny.en")
        rss = {}
        for n in args.sizes:
            manifest = cycled_manifest(corpus, n, tmp / f"m{n}.jsonl")
            out = subprocess.run([sys.executable, __file__, "--rss-child", manifest, model_dir], check=True,
                                 capture_output=True, text=True, cwd=ROOT)
            rss[n] = json.loads(out.stdout.strip().splitlines()[-1])
        small, large = min(args.sizes), max(args.sizes)
        report["dataset_peak_rss"] = {
            **{f"{n}_clips": {"peak_rss_mib": round(r["peak_rss_mib"], 1), "iterate_s": round(r["seconds"], 1),
                              "clips_per_s": round(r["clips"] / r["seconds"], 1)} for n, r in rss.items()},
            "ratio_large_to_small": round(rss[large]["peak_rss_mib"] / rss[small]["peak_rss_mib"], 3),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--rss-child":
        rss_child(sys.argv[2], sys.argv[3])
    else:
        main()
