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
