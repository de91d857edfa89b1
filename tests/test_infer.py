"""infer.py, whisper_mtl/transcribe.py and whisper_mtl/formats.py.

Fast unit tests (window planning, input collection, level combination, output formats) first; then the
end-to-end checks with the bundled tiny.en: a ~95 s clip at four known levels, digital silence, a folder
of broken files through the CLI, and subtitles that parse back.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from whisper_mtl.audio import SAMPLE_RATE
from whisper_mtl.formats import FORMATS, format_timestamp, render, result_to_dict, to_srt, to_vtt
from whisper_mtl.loudness import lufs, rms_dbfs
from whisper_mtl.transcribe import (
    ENERGY_FRAME_SAMPLES,
    FileResult,
    Measured,
    Segment,
    TranscribeOptions,
    collect_inputs,
    combine_levels,
    measure_span,
    plan_windows,
    transcribe,
)

ROOT = Path(__file__).resolve().parents[1]
SR = SAMPLE_RATE


# ------------------------------------------------------------------------------------------ helpers
def tone(seconds: float, dbfs: float, freq: float = 440.0) -> np.ndarray:
    """A sine whose RMS level is `dbfs` (dBFS)."""
    t = np.arange(round(seconds * SR)) / SR
    return (math.sqrt(2) * 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SR), dtype=np.float32)


SRT_CUE = re.compile(r"^(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+)$")
VTT_CUE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})\n(.+)$")


def _secs(h, m, s, ms) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """An independent SubRip reader: numbered cues 1..n, HH:MM:SS,mmm --> HH:MM:SS,mmm, one text line."""
    cues = []
    for i, block in enumerate(b for b in text.strip().split("\n\n") if b):
        m = SRT_CUE.match(block)
        assert m, f"bad srt cue: {block!r}"
        assert int(m[1]) == i + 1
        cues.append((_secs(*m.groups()[1:5]), _secs(*m.groups()[5:9]), m[10]))
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    """An independent WebVTT reader: the WEBVTT header, then HH:MM:SS.mmm --> HH:MM:SS.mmm cues."""
    blocks = [b for b in text.strip().split("\n\n") if b]
    assert blocks[0] == "WEBVTT"
    cues = []
    for block in blocks[1:]:
        m = VTT_CUE.match(block)
        assert m, f"bad vtt cue: {block!r}"
        cues.append((_secs(*m.groups()[0:4]), _secs(*m.groups()[4:8]), m[9]))
    return cues


def assert_monotonic(cues):
    assert cues
    for (s0, e0, _), (s1, e1, _) in zip(cues, cues[1:] + [(math.inf, math.inf, "")]):
        assert 0 <= s0 < e0 <= s1


# ------------------------------------------------------------------------------------ window planning
def test_plan_windows_cut_in_the_longest_pause_near_the_edge():
    window = 10 * SR
    # tone 0-6.0 s, short gap 6.0-6.2, tone to 7.5, long gap 7.5-8.3, tone to 14, gap 14-14.1, tone to 21
    wave = np.concatenate([tone(6.0, -20), silence(0.2), tone(1.3, -20), silence(0.8), tone(5.7, -20),
                           silence(0.1), tone(6.9, -20)])  # fmt: skip
    windows = plan_windows(wave, window, search_samples=4 * SR)
    assert windows[0][0] == 0 and windows[-1][1] == len(wave)
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:])), "gaps or overlaps"
    assert all(0 < e - s <= window for s, e in windows)
    first_cut = windows[0][1] / SR
    assert 7.5 < first_cut < 8.3, f"first cut at {first_cut:.2f} s, not inside the 0.8 s pause"
    assert abs(first_cut - 7.9) <= ENERGY_FRAME_SAMPLES / SR  # the pause's centre
    second_cut = windows[1][1] / SR
    assert 14.0 <= second_cut <= 14.1 + 1e-9  # the only pause in [first_cut + 6, first_cut + 10]


def test_plan_windows_without_pause_uses_the_quietest_stretch_and_short_audio_is_one_window():
    window = 4 * SR
    loud, soft = tone(3.5, -20), tone(0.4, -45)  # no silence at all: the soft stretch is the cut
    wave = np.concatenate([loud, soft, loud])
    windows = plan_windows(wave, window, search_samples=SR)
    assert 3.5 <= windows[0][1] / SR <= 3.9
    assert plan_windows(tone(3.0, -20), window, SR) == [(0, 3 * SR)]
    assert plan_windows(tone(4.0, -20), window, SR) == [(0, 4 * SR)]  # exactly one window
    # no search: cut exactly at the window edge
    assert plan_windows(np.concatenate([loud, loud]), window, 0) == [(0, window), (window, 7 * SR)]


# ------------------------------------------------------------------------------------------- inputs
def test_collect_inputs_folders_globs_and_missing(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for rel in ["a/x.wav", "a/deep/y.FLAC", "a/notes.txt", "a/.z.wav", ".hidden/h.wav", "b.ogg"]:
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "empty_dir").mkdir()
    got = collect_inputs([str(tmp_path / "a"), str(tmp_path / "*.ogg"), str(tmp_path / "a" / "x.wav"),
                          str(tmp_path / "nothing*.wav"), str(tmp_path / "empty_dir"), str(tmp_path / "missing.wav")])  # fmt: skip
    names = [(Path(i.path).name, i.error is None) for i in got]
    assert names == [("y.FLAC", True), ("x.wav", True), ("b.ogg", True), ("nothing*.wav", False),
                     ("empty_dir", False), ("missing.wav", True)]  # fmt: skip
    assert "no file matches" in got[3].error and "no audio files" in got[4].error


# ------------------------------------------------------------------------------------------- levels
def test_combine_levels_is_the_power_average():
    # two equal-length windows at -20 and -30 dBFS: RMS of the whole is 10·log10((0.01 + 0.001) / 2)
    assert combine_levels([-20.0, -30.0], [1.0, 1.0], "rms_dbfs") == pytest.approx(10 * math.log10(0.0055))
    wave = np.concatenate([tone(2.0, -20), tone(1.0, -30), silence(1.0)])
    parts = [wave[: 2 * SR], wave[2 * SR : 3 * SR], wave[3 * SR :]]
    levels = [rms_dbfs(parts[0]), rms_dbfs(parts[1]), None]  # silence: no level
    assert combine_levels(levels, [2.0, 1.0, 1.0], "rms_dbfs") == pytest.approx(rms_dbfs(wave), abs=1e-6)
    # LUFS gates silence out: it only averages windows with a level
    assert combine_levels([-20.0, None], [1.0, 5.0], "lufs") == pytest.approx(-20.0)
    assert combine_levels([None, None], [1.0, 1.0], "rms_dbfs") is None


def test_measure_span_gives_reasons_for_undefined_levels():
    m = measure_span(torch.zeros(SR))
    assert m.rms_dbfs is None and m.lufs is None
    assert "silence" in m.notes["rms_dbfs"] and "gate" in m.notes["lufs"]
    short = measure_span(torch.from_numpy(tone(0.15, -20)))
    assert short.rms_dbfs == pytest.approx(-20.0, abs=0.05) and short.lufs is None and "0.4 s" in short.notes["lufs"]


# ------------------------------------------------------------------------------------------ formats
def _fake_result() -> FileResult:
    m = Measured(-20.0, -19.5)
    segs = (
        Segment(0.0, 29.52, "Hello there.", -20.1, m, -0.2, 0.01, False),
        Segment(29.52, 31.0, "", None, Measured(None, None, {"rms_dbfs": "digital silence"}), None, None, True),
        Segment(31.0, 3725.0634, "Good bye, 'friend'.", -21.0, m, -0.3, 0.02, False),
    )
    return FileResult("dir with space/é.wav", "rms_dbfs", 3725.0634, "Hello there. Good bye, 'friend'.",
                      -20.5, None, m, segs)  # fmt: skip


def test_formats_parse_back():
    r = _fake_result()
    assert format_timestamp(3725.0634) == "01:02:05,063" and format_timestamp(0.0, ".") == "00:00:00.000"
    srt, vtt = parse_srt(to_srt(r)), parse_vtt(to_vtt(r))
    assert srt == vtt == [(0.0, 29.52, "Hello there."), (31.0, 3725.063, "Good bye, 'friend'.")]
    assert_monotonic(srt)
    d = json.loads(render(r, "jsonl"))
    assert d == json.loads(render(r, "json")) == result_to_dict(r)
    assert d["predicted"] == {"target": "rms_dbfs", "unit": "dBFS", "value": -20.5}
    assert d["segments"][1]["measured"] == {"rms_dbfs": None, "lufs": None, "notes": {"rms_dbfs": "digital silence"}}
    assert render(r, "txt") == r.text + "\n"
    err = FileResult("bad.wav", "lufs", error="empty file (0 bytes)")
    assert json.loads(render(err, "jsonl")) == {"path": "bad.wav", "error": "empty file (0 bytes)"}
    assert set(FORMATS) == {"jsonl", "json", "srt", "vtt", "txt"}


# ------------------------------------------------------------------------------- end to end: tiny.en
@pytest.fixture(scope="module")
def tiny_model(tiny_en_dir):
    from whisper_mtl.model import WhisperMTL

    return WhisperMTL.from_pretrained(str(tiny_en_dir))


def test_digital_silence_gives_empty_text_and_null_loudness_with_reasons(tiny_model, tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, silence(3.0), SR)
    (result,) = transcribe(tiny_model, [str(path)], progress=False)
    assert result.error is None and result.duration_s == pytest.approx(3.0)
    assert result.text == "" and [s.text for s in result.segments] == [""] and result.segments[0].silent
    d = result_to_dict(result)
    assert d["measured"]["rms_dbfs"] is None and d["measured"]["lufs"] is None
    assert "silence" in d["measured"]["notes"]["rms_dbfs"] and "gate" in d["measured"]["notes"]["lufs"]
    assert d["predicted"]["value"] is None and "untrained" in d["predicted"]["note"]
    assert to_srt(result) == "" and parse_vtt(to_vtt(result)) == []  # no cue for silence


def _speech(synth_corpus, index: int = 0) -> np.ndarray:
    from whisper_mtl.audio import load_audio
    from whisper_mtl.data import read_manifest

    clips = read_manifest(synth_corpus[0]) + read_manifest(synth_corpus[1])
    return load_audio(clips[index].audio).numpy()


def _run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "infer.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_cli_folder_with_broken_files_reports_each_and_exits_non_zero(tiny_en_dir, synth_corpus, tmp_path):
    folder = tmp_path / "in"
    (folder / "dir with spaces" / "Ünïcødé ß").mkdir(parents=True)
    (folder / "empty.wav").write_bytes(b"")
    good = folder / "good.wav"
    sf.write(good, _speech(synth_corpus, 0), SR)
    (folder / "truncated.wav").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (folder / "random.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    (folder / "text.flac").write_text("this is not audio\n")
    sf.write(folder / "short.wav", tone(0.15, -20), SR)
    spaced = folder / "dir with spaces" / "Ünïcødé ß" / "ça va.flac"
    sf.write(spaced, _speech(synth_corpus, 1), SR)
    good.unlink()  # the truncated copy is all that is left of it

    proc = _run_cli("--ckpt", tiny_en_dir, folder, "--quiet")
    assert proc.returncode == 1, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    by_name = {Path(d["path"]).name: d for d in lines}
    assert len(lines) == 6 and set(by_name) == {"empty.wav", "truncated.wav", "random.wav", "text.flac", "short.wav", "ça va.flac"}
    for name in ("empty.wav", "truncated.wav", "random.wav", "text.flac"):
        assert set(by_name[name]) == {"path", "error"} and "\n" not in by_name[name]["error"], by_name[name]
        assert f"{name}: " in proc.stderr  # one stderr line names the file and the cause
    assert "truncated" in by_name["truncated.wav"]["error"] and "empty" in by_name["empty.wav"]["error"]
    short = by_name["short.wav"]
    assert short["duration_s"] == pytest.approx(0.15) and short["measured"]["rms_dbfs"] == pytest.approx(-20, abs=0.1)
    assert short["measured"]["lufs"] is None and "0.4 s" in short["measured"]["notes"]["lufs"]
    spoken = by_name["ça va.flac"]
    assert Path(spoken["path"]) == spaced and len(spoken["text"].split()) >= 3
    assert [(s["start"], s["end"]) for s in spoken["segments"]] == [(0.0, spoken["duration_s"])]
    assert spoken["predicted"]["value"] is None and spoken["predicted"]["unit"] == "dBFS"

    # the same folder as subtitles, one file per good input: they parse back
    out = tmp_path / "subs"
    proc = _run_cli("--ckpt", tiny_en_dir, folder, "--format", "srt", "--out", out, "--quiet")
    assert proc.returncode == 1 and sorted(p.name for p in out.iterdir()) == ["short.srt", "ça va.srt"]
    cues = parse_srt((out / "ça va.srt").read_text(encoding="utf-8"))
    assert_monotonic(cues)
    assert cues[0][2] == spoken["text"]


LEVELS_DBFS = (-25.0, -37.0, -29.0, -45.0)  # RMS level of each speech block (dBFS); peaks stay below full scale
GAP_S, PAUSE_S, EDGE_S = 0.3, 1.2, 0.3  # between utterances, between blocks, at both ends (digital silence)


def _trim(wave: np.ndarray) -> np.ndarray:
    """The utterance without the clip's lead/tail silence (20 ms kept either side)."""
    loud = np.flatnonzero(np.abs(wave) > 0.05 * np.abs(wave).max())
    return wave[max(loud[0] - 320, 0) : loud[-1] + 320]


@pytest.fixture(scope="module")
def four_levels(tiny_model, synth_corpus, tmp_path_factory):
    """A ~95 s clip: four blocks of speech at LEVELS_DBFS separated by pauses, transcribed in one go, plus the
    same utterances transcribed alone. Returns (result, wave, block spans in samples, texts, hyps alone)."""
    from whisper_mtl.data import read_manifest
    from whisper_mtl.metrics import asr_metrics

    # each utterance alone: the reference transcription quality for the same audio
    clips = read_manifest(synth_corpus[0])[:16]  # two batches of 8 windows: enough voices, bounded cost
    folder, paths = tmp_path_factory.mktemp("utterances"), []
    for i, clip in enumerate(clips):
        paths.append(folder / f"utt{i:02d}.wav")
        sf.write(paths[-1], _trim(_speech(synth_corpus, i)), SR, subtype="FLOAT")
    alone = [r.text for r in transcribe(tiny_model, map(str, paths), progress=False)]
    # tiny.en garbles some eSpeak voices even alone; the clip is built from the ones it hears, so the
    # comparison measures what windowing costs, not tiny.en's accent robustness
    usable = [i for i, c in enumerate(clips) if asr_metrics([c.text], [alone[i]])["wer"] <= 45.0]
    assert len(usable) >= 5, "too few utterances tiny.en transcribes alone"

    # four blocks of speech (~26, 26, 26, 13 s) at known levels, separated by pauses: ~95 s
    pieces, spans, texts, hyps_alone, k = [silence(EDGE_S)], [], [], [], 0
    for b, level in enumerate(LEVELS_DBFS):
        lo, hi = (25.0, 27.0) if b < 3 else (12.0, 14.0)
        block, misses = np.zeros(0, dtype=np.float32), 0
        while len(block) < lo * SR and misses < len(usable):  # cycle through the utterances that still fit
            i = usable[k % len(usable)]
            k += 1
            utt = sf.read(paths[i], dtype="float32")[0]
            joined = np.concatenate([block, silence(GAP_S), utt]) if len(block) else utt
            if len(joined) > hi * SR:
                misses += 1
                continue
            block, misses = joined, 0
            texts.append(clips[i].text)
            hyps_alone.append(alone[i])
        block *= 10 ** ((level - rms_dbfs(block)) / 20)
        if b:
            pieces.append(silence(PAUSE_S))
        start = sum(map(len, pieces))
        spans.append((start, start + len(block)))
        pieces.append(block)
    wave = np.concatenate(pieces + [silence(EDGE_S)])
    path = tmp_path_factory.mktemp("four_levels") / "four levels.flac"
    sf.write(path, wave, SR, subtype="PCM_24")
    wave = sf.read(path, dtype="float32")[0]  # what the model hears
    assert 90 < len(wave) / SR < 100

    (result,) = transcribe(tiny_model, [str(path)], TranscribeOptions(batch_size=4), progress=False)
    return result, wave, spans, texts, hyps_alone


def test_long_clip_at_four_levels_gives_a_loudness_timeline(four_levels):
    result, wave, spans, _, _ = four_levels
    segs = result.segments
    # times cover the whole clip, no gaps, no overlaps
    assert segs[0].start == 0.0 and segs[-1].end == pytest.approx(len(wave) / SR)
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))
    # one window per level block: the cuts fall in the pauses between blocks
    assert len(segs) == 4
    for seg, (_, block_end), (next_start, _) in zip(segs, spans, spans[1:]):
        assert block_end / SR < seg.end < next_start / SR
    # measured loudness follows the levels
    for seg, level in zip(segs, LEVELS_DBFS):
        direct = rms_dbfs(wave[round(seg.start * SR) : round(seg.end * SR)])
        assert abs(seg.measured.rms_dbfs - direct) < 0.5
        assert abs(seg.measured.rms_dbfs - level) < 0.5, (seg.measured.rms_dbfs, level)
        assert seg.measured.lufs is not None and not seg.silent and seg.text
    # subtitles of the timeline parse back, monotonic
    for cues in (parse_srt(to_srt(result)), parse_vtt(to_vtt(result))):
        assert len(cues) == 4
        assert_monotonic(cues)


def test_long_clip_transcript_is_as_good_as_each_utterance_alone(four_levels):
    from whisper_mtl.metrics import asr_metrics

    result, wave, _, texts, hyps_alone = four_levels
    wer_alone = asr_metrics(texts, hyps_alone)["wer"]
    wer_long = asr_metrics([" ".join(texts)], [result.text])["wer"]
    print(f"WER alone {wer_alone:.1f} %, long-form {wer_long:.1f} %, {len(texts)} utterances, {len(wave) / SR:.1f} s")
    assert wer_long <= wer_alone + 5.0
