"""Transcribe audio files, folders or globs with a whisper-mtl checkpoint: text plus a loudness timeline.

    python infer.py recording.flac                              # bundled tiny.en, one JSON line on stdout
    python infer.py --ckpt runs/mtl/best talks/ "*.wav" --format srt --out subs/

Each input gives one result: path, duration_s, text, predicted loudness (the checkpoint's target and
unit; null with a note when its intensity head is untrained), measured loudness (rms_dbfs and lufs) and
one segment per window (start, end, text, predicted, measured, avg_logprob). Audio longer than the model's
window is cut at pauses near the window edge; windows from all inputs are batched together. An input that
cannot be read yields {"path", "error"} (and a line on stderr); the exit code is then 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from whisper_mtl.fileio import atomic_write_text
from whisper_mtl.formats import EXTENSIONS, FORMATS, SINGLE_INPUT_FORMATS, render, to_json_line
from whisper_mtl.transcribe import TranscribeOptions, collect_inputs, transcribe

PROG = "infer.py"


def parse_args(argv=None) -> argparse.Namespace:
    defaults = TranscribeOptions()
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="audio file (any format/rate/channels soundfile reads), folder (searched recursively) or glob (quote it; ** spans folders)")
    p.add_argument("--ckpt", default="tiny.en",
                   help="checkpoint: a saved whisper-mtl dir, a transformers Whisper dir, a CTranslate2 dir, a hub id, or 'tiny.en' (bundled, offline; default)")
    p.add_argument("--format", default="jsonl", choices=FORMATS,
                   help="jsonl: one JSON object per input per line (default); json: one JSON array; srt/vtt: subtitles, one cue per window; txt: the transcript")
    p.add_argument("--out", type=Path, default=None,
                   help="write one file per input into this folder (NAME.<format>) instead of stdout; needed for srt/vtt/txt with several inputs")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size,
                   help="windows per forward pass, taken from all inputs together (default %(default)s)")
    p.add_argument("--num-beams", type=int, default=defaults.num_beams, help="beam width; 1 = greedy (default %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="cap on generated tokens per window (default: the model's)")
    p.add_argument("--search-seconds", type=float, default=defaults.search_seconds,
                   help="how far back from a window's edge (s) to look for a pause to cut at (default %(default)s)")
    p.add_argument("--silence-dbfs", type=float, default=defaults.silence_dbfs,
                   help="a window whose RMS level is below this (dBFS) is silence: empty text, model skipped (default %(default)s)")
    p.add_argument("--no-speech-threshold", type=float, default=defaults.no_speech_threshold,
                   help="Whisper's rule: empty text when P(no speech) is above this and avg log-prob below --logprob-threshold (default %(default)s)")
    p.add_argument("--logprob-threshold", type=float, default=defaults.logprob_threshold,
                   help="see --no-speech-threshold (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    return p.parse_args(argv)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _out_path(out_dir: Path, source: str, fmt: str, taken: set[str]) -> Path:
    """<out>/<stem><ext>, with -2, -3 ... when two inputs share a stem (a/x.wav and b/x.flac)."""
    stem, n = Path(source).stem or "input", 1
    name = stem + EXTENSIONS[fmt]
    while name in taken:
        n += 1
        name = f"{stem}-{n}{EXTENSIONS[fmt]}"
    taken.add(name)
    return out_dir / name


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        options = TranscribeOptions(
            batch_size=args.batch_size, num_beams=args.num_beams, max_new_tokens=args.max_new_tokens,
            search_seconds=args.search_seconds, silence_dbfs=args.silence_dbfs,
            no_speech_threshold=args.no_speech_threshold, logprob_threshold=args.logprob_threshold,
        )  # fmt: skip
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2

    # inputs: files, folders, globs (a bad one becomes an error result, the others go on)
    inputs = collect_inputs(args.paths)
    if args.out is None and args.format in SINGLE_INPUT_FORMATS and len(inputs) > 1:
        print(f"{PROG}: error: --format {args.format} writes one document per input; "
              f"{len(inputs)} inputs need --out DIR", file=sys.stderr)  # fmt: skip
        return 2
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)

    # model
    from whisper_mtl.model import WhisperMTL

    try:
        model = WhisperMTL.from_pretrained(args.ckpt).to(_device(args.device)).eval()
    except Exception as e:  # bad name, missing dir, corrupt weights: one line, not a traceback
        print(f"{PROG}: error: cannot load checkpoint {args.ckpt}: {' '.join(str(e).split())}", file=sys.stderr)
        return 2

    # transcribe, writing each result as soon as it is ready
    n_failed, n_written, taken, first = 0, 0, set(), True
    if args.out is None and args.format == "json":
        sys.stdout.write("[\n")
    for result in transcribe(model, inputs, options, progress=not args.quiet):
        if result.error is not None:
            n_failed += 1
            print(f"{PROG}: {result.path}: {result.error}", file=sys.stderr)
        if args.out is not None:
            if result.error is None or args.format in ("jsonl", "json"):
                atomic_write_text(_out_path(args.out, result.path, args.format, taken), render(result, args.format))
                n_written += 1
        elif args.format == "jsonl":
            sys.stdout.write(to_json_line(result) + "\n")
        elif args.format == "json":  # a JSON array streamed one element per line
            sys.stdout.write(("" if first else ",\n") + to_json_line(result))
        elif result.error is None:
            sys.stdout.write(render(result, args.format))
        sys.stdout.flush()
        first = False
    if args.out is None and args.format == "json":
        sys.stdout.write("\n]\n")
    if args.out is not None:
        print(f"{PROG}: wrote {n_written} file(s) to {args.out}" + (f"; {n_failed} input(s) failed" if n_failed else ""),
              file=sys.stderr)  # fmt: skip
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
