"""What does the intensity head cost on top of plain Whisper generation? (goal: <= 2 %)

Same batch, same model (the bundled tiny.en by default), same greedy decoding length, in one process,
interleaved runs, medians:
  plain  log-mel + `whisper.generate(input_features=...)`: what a transformers user runs for ASR alone
         (the encoder runs inside generate)
  mtl    `WhisperMTL.predict`: one encoder pass feeding the intensity head AND `generate(encoder_outputs=...)`,
         plus per-token log-probs and decoding to text
  head   masked pooling + IntensityHead alone, on the encoder output
Reports wall-clock and CPU (process) seconds: on a shared machine CPU time is the steadier of the two.

    python bench/bench_head_overhead.py --runs 5 --batch 4 --json out/bench_head_overhead.json
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from whisper_mtl.audio import load_audio, log_mel_spectrogram, pad_or_trim  # noqa: E402
from whisper_mtl.data import read_manifest  # noqa: E402
from whisper_mtl.model import WhisperMTL  # noqa: E402


def timed(fn):
    """Run fn() once -> (result, wall s, CPU s)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny.en", help="any name resolve_model accepts (default: bundled tiny.en)")
    parser.add_argument("--manifest", default=None,
                        help="JSONL manifest of clips (default: the shared 24-clip synthetic corpus, built if missing)")
    parser.add_argument("--batch", type=int, default=4, help="clips per batch")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each variant (after one warm-up)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="decoding cap, the same for both variants")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadiest on a shared box)")
    parser.add_argument("--json", default=None, help="also write the results here as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    manifest = args.manifest
    if manifest is None:
        from whisper_mtl.synth import synthesize_corpus

        out = ROOT / ".cache" / "synth_24_seed0"
        manifest = out / "train.jsonl"
        if not manifest.exists():
            manifest, _ = synthesize_corpus(out, n=24, seed=0, progress=False)
    clips = read_manifest(manifest)[: args.batch]
    model = WhisperMTL.from_pretrained(args.model).eval()
    raw = [load_audio(c.audio) for c in clips]
    lengths = torch.tensor([w.numel() for w in raw], dtype=torch.long)
    waves = torch.stack([pad_or_trim(w, model.window_samples) for w in raw])

    def plain():
        with torch.no_grad():
            mel = log_mel_spectrogram(waves, n_mels=model.n_mels)
            return model.whisper.generate(input_features=mel, max_new_tokens=args.max_new_tokens)

    def mtl():
        return model.predict(waves, lengths, max_new_tokens=args.max_new_tokens)

    with torch.no_grad():
        hidden, level_db = model.encode_with_level(waves, lengths)

    def head():
        with torch.no_grad():
            return model.intensity_head(model.head_input(hidden, level_db, lengths))

    # warm-up, and the two paths must decode the same tokens or the comparison means nothing
    reference, _, _ = timed(plain)
    predictions, _, _ = timed(mtl)
    same = [p.tokens for p in predictions] == [[t for t in s if t < 50256] for s in reference.tolist()]
    if not same:
        print("error: plain generate and WhisperMTL.predict decoded different tokens", file=sys.stderr)
        return 1
    times = {"plain": ([], []), "mtl": ([], []), "head": ([], [])}
    for run in range(args.runs):
        order = ("plain", "mtl") if run % 2 == 0 else ("mtl", "plain")  # interleave: cancel drift
        for name in order + ("head",):
            _, wall, cpu = timed({"plain": plain, "mtl": mtl, "head": head}[name])
            times[name][0].append(wall)
            times[name][1].append(cpu)
        print(f"run {run + 1}/{args.runs}: plain {times['plain'][0][-1]:.2f} s, mtl {times['mtl'][0][-1]:.2f} s",
              file=sys.stderr)

    med = {k: {"wall_s": statistics.median(w), "cpu_s": statistics.median(c)} for k, (w, c) in times.items()}
    result = {
        "model": args.model, "batch": len(clips), "runs": args.runs, "threads": args.threads,
        "max_new_tokens": args.max_new_tokens, "tokens_per_clip": [len(p.tokens) + 1 for p in predictions],
        "clip_seconds": [round(n / model.sample_rate, 2) for n in lengths.tolist()],
        "median": med,
        "mtl_overhead_pct_wall": 100 * (med["mtl"]["wall_s"] / med["plain"]["wall_s"] - 1),
        "mtl_overhead_pct_cpu": 100 * (med["mtl"]["cpu_s"] / med["plain"]["cpu_s"] - 1),
        "head_pct_of_plain_cpu": 100 * med["head"]["cpu_s"] / med["plain"]["cpu_s"],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
