"""Output formats for transcription results: JSON lines, JSON, SubRip (srt), WebVTT (vtt) and plain text.

`result_to_dict` is the one JSON shape (jsonl and json print it); srt and vtt hold one cue per non-empty
segment (window); txt holds the file's text. Times are in seconds (JSON, rounded to ms) or
HH:MM:SS,mmm / HH:MM:SS.mmm (srt / vtt); loudness in dB of the unit given beside it.
"""

from __future__ import annotations

import json

FORMATS = ("jsonl", "json", "srt", "vtt", "txt")
EXTENSIONS = {"jsonl": ".jsonl", "json": ".json", "srt": ".srt", "vtt": ".vtt", "txt": ".txt"}
SINGLE_INPUT_FORMATS = ("srt", "vtt", "txt")  # one document per input: several inputs need --out


def _db(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)


def _measured(m) -> dict | None:
    if m is None:
        return None
    out = {"rms_dbfs": _db(m.rms_dbfs), "lufs": _db(m.lufs)}
    if m.notes:
        out["notes"] = dict(m.notes)
    return out


def result_to_dict(result) -> dict:
    """The JSON object of one FileResult: {"path", "error"} for a failed input, else path, duration_s,
    text, predicted {target, unit, value[, note]}, measured {rms_dbfs, lufs[, notes]} and segments
    [{start, end, text, predicted, measured, avg_logprob, no_speech_prob, silent}] (s, dB)."""
    if result.error is not None:
        return {"path": result.path, "error": result.error}
    predicted = {"target": result.target, "unit": result.unit, "value": _db(result.predicted)}
    if result.predicted_note:
        predicted["note"] = result.predicted_note
    return {
        "path": result.path,
        "duration_s": round(result.duration_s, 3),
        "text": result.text,
        "predicted": predicted,
        "measured": _measured(result.measured),
        "segments": [
            {
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "predicted": _db(s.predicted),
                "measured": _measured(s.measured),
                "avg_logprob": None if s.avg_logprob is None else round(s.avg_logprob, 4),
                "no_speech_prob": None if s.no_speech_prob is None else round(s.no_speech_prob, 4),
                "silent": s.silent,
            }
            for s in result.segments
        ],
    }


def to_json_line(result) -> str:
    """One line of JSON (no NaN/Infinity: strict JSON other tools can read)."""
    return json.dumps(result_to_dict(result), ensure_ascii=False, allow_nan=False)


def format_timestamp(seconds: float, decimal_marker: str = ",") -> str:
    """HH:MM:SS,mmm (srt) or, with decimal_marker ".", HH:MM:SS.mmm (vtt); seconds >= 0, rounded to ms."""
    ms = round(max(seconds, 0.0) * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def _cues(result):
    return [s for s in result.segments if s.text]


def to_srt(result) -> str:
    """SubRip: numbered cues "i\\nstart --> end\\ntext\\n" separated by blank lines, one per spoken segment."""
    blocks = [
        f"{i}\n{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{s.text}\n"
        for i, s in enumerate(_cues(result), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(result) -> str:
    """WebVTT: the "WEBVTT" header, then "start --> end\\ntext" cues, one per spoken segment."""
    blocks = ["WEBVTT\n"] + [
        f"{format_timestamp(s.start, '.')} --> {format_timestamp(s.end, '.')}\n{s.text}\n" for s in _cues(result)
    ]
    return "\n".join(blocks)


def to_txt(result) -> str:
    """The file's transcript on one line."""
    return result.text + "\n"


def render(result, fmt: str) -> str:
    """One FileResult as a document of format `fmt` (a successful result for srt/vtt/txt)."""
    if fmt in ("jsonl", "json"):
        return to_json_line(result) + "\n" if fmt == "jsonl" else json.dumps(
            result_to_dict(result), ensure_ascii=False, allow_nan=False, indent=2
        ) + "\n"
    if fmt == "srt":
        return to_srt(result)
    if fmt == "vtt":
        return to_vtt(result)
    if fmt == "txt":
        return to_txt(result)
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
