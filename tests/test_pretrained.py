"""The offline Whisper: the bundled tiny.en converted from CTranslate2 must be the same model as CTranslate2's own
(encoder output and greedy tokens), the converter must refuse what it cannot convert losslessly, and
resolve_model / build_random_whisper must hand back directories transformers loads."""

import json
import struct
import subprocess
import sys
from pathlib import Path

import ctranslate2
import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration, WhisperTokenizer

from whisper_mtl.audio import N_SAMPLES, load_audio, log_mel_spectrogram, pad_or_trim
from whisper_mtl.data import read_manifest
from whisper_mtl.pretrained import (ModelSourceError, _bundled_ct2_dir, build_random_whisper, cache_dir,
                                    import_ct2, main, read_ct2_model, resolve_model)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_ct2_dirs(random_whisper_dir, tmp_path_factory):
    """The small random Whisper exported by CTranslate2's own converter, float16 and int8."""
    from ctranslate2.converters import TransformersConverter

    base = tmp_path_factory.mktemp("ct2")
    dirs = {}
    for quantization in ("float16", "int8"):
        out = base / quantization
        TransformersConverter(str(random_whisper_dir), copy_files=["tokenizer.json"]).convert(
            str(out), quantization=quantization)
        dirs[quantization] = out
    return dirs


def test_tiny_en_matches_ctranslate2(tiny_en_dir, synth_corpus):
    """Encoder output within 1e-3 and identical greedy tokens on the 5 synthetic test clips, through
    WhisperMTL's own path (device log-mel, one encoder pass, generate(encoder_outputs=...))."""
    from whisper_mtl.model import WhisperMTL

    clips = read_manifest(synth_corpus[1])[:5]
    assert len(clips) == 5
    raw = [load_audio(c.audio) for c in clips]
    lengths = torch.tensor([w.numel() for w in raw])
    waves = torch.stack([pad_or_trim(w, N_SAMPLES) for w in raw])
    model = WhisperMTL.from_pretrained(tiny_en_dir)
    ct2 = ctranslate2.models.Whisper(str(_bundled_ct2_dir()), device="cpu", compute_type="float32",
                                     intra_threads=2)
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(log_mel_spectrogram(waves).numpy()))
    ct2_hidden = torch.from_numpy(np.array(ct2.encode(features, to_cpu=True)))
    with torch.no_grad():
        hf_hidden = model.encode(waves, lengths)
    diff = (ct2_hidden - hf_hidden).abs().max().item()
    assert diff <= 1e-3, f"encoder max abs diff {diff}"

    prefix = [50257, 50362]  # <|startoftranscript|><|notimestamps|>: English-only
    ct2_tokens = [r.sequences_ids[0] for r in ct2.generate(features, [prefix] * len(clips), beam_size=1)]
    predictions = model.predict(waves, lengths, max_new_tokens=100)
    assert [p.tokens for p in predictions] == ct2_tokens
    # and it really transcribes: every clip gets text sharing words with its reference
    words = lambda s: {w.strip(".,?!").lower() for w in s.split()}  # noqa: E731
    for clip, prediction in zip(clips, predictions):
        assert words(prediction.text) & words(clip.text), (prediction.text, clip.text)


def test_converted_directory_is_set_up_like_the_hub(tiny_en_dir):
    tokenizer = WhisperTokenizer.from_pretrained(tiny_en_dir)
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.model_max_length == 448
    assert len(tokenizer) == 51864  # 50257 BPE + special + 1501 timestamp tokens = tiny.en's vocabulary
    assert tokenizer("hi").input_ids[:2] == [50257, 50362] and tokenizer("hi").input_ids[-1] == 50256
    config = json.loads((tiny_en_dir / "config.json").read_text())
    assert (config["d_model"], config["encoder_layers"], config["decoder_layers"], config["vocab_size"]) == (
        384, 4, 4, 51864)
    generation = json.loads((tiny_en_dir / "generation_config.json").read_text())
    assert generation["no_timestamps_token_id"] == 50362 and generation["is_multilingual"] is False
    assert generation["decoder_start_token_id"] == 50257 and generation["eos_token_id"] == 50256
    assert generation["begin_suppress_tokens"] == [220, 50256] and 50361 in generation["suppress_tokens"]
    assert [1, 0] in generation["alignment_heads"] and len(generation["alignment_heads"]) == 8
    processor = json.loads((tiny_en_dir / "processor_config.json").read_text())
    assert processor["feature_extractor"]["feature_size"] == 80
    assert processor["feature_extractor"]["chunk_length"] == 30
    # the cache holds no half-written siblings
    assert not [p for p in tiny_en_dir.parent.iterdir() if p.name.startswith(f".{tiny_en_dir.name}.tmp")]


def test_resolve_model_names(tiny_en_dir, random_whisper_dir, tmp_path):
    assert resolve_model("tiny.en") == str(tiny_en_dir)  # converted once, then reused
    assert Path(resolve_model("tiny.en")).parent == cache_dir()
    assert resolve_model("openai/whisper-small") == "openai/whisper-small"  # hub ids pass through
    assert resolve_model(random_whisper_dir) == str(random_whisper_dir)
    with pytest.raises(ModelSourceError, match="no such directory"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ModelSourceError, match="tiny.en"):
        resolve_model("tiny-en")  # a typo is not sent to the hub
    with pytest.raises(ModelSourceError, match="neither a transformers"):
        resolve_model(tmp_path)


def test_ct2_round_trip_is_exact(random_whisper_dir, small_ct2_dirs, tmp_path, monkeypatch):
    """HF -> CTranslate2 (their converter, float16) -> import_ct2 gives back the float16-rounded weights."""
    monkeypatch.setenv("WHISPER_MTL_CACHE", str(tmp_path / "cache"))
    out = Path(resolve_model(small_ct2_dirs["float16"]))  # a CTranslate2 directory is converted into the cache
    assert out.parent == tmp_path / "cache" and resolve_model(small_ct2_dirs["float16"]) == str(out)
    original = WhisperForConditionalGeneration.from_pretrained(random_whisper_dir)
    converted = WhisperForConditionalGeneration.from_pretrained(out)
    theirs, ours = original.state_dict(), converted.state_dict()
    assert theirs.keys() == ours.keys()
    for name, value in theirs.items():
        assert torch.equal(ours[name], value.half().float()), name
    assert converted.config.max_source_positions == 500  # the 10 s window survives
    assert converted.proj_out.weight.data_ptr() == converted.model.decoder.embed_tokens.weight.data_ptr()


def test_quantised_and_broken_inputs_are_refused(small_ct2_dirs, tmp_path):
    with pytest.raises(ModelSourceError, match="int8/int16-quantised"):
        import_ct2(small_ct2_dirs["int8"], tmp_path / "int8")
    assert not (tmp_path / "int8").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_bytes((small_ct2_dirs["float16"] / "tokenizer.json").read_bytes())
    (broken / "model.bin").write_bytes((small_ct2_dirs["float16"] / "model.bin").read_bytes()[:5000])
    with pytest.raises(ModelSourceError, match="truncated or corrupt"):
        import_ct2(broken, tmp_path / "out")
    (broken / "model.bin").write_bytes(struct.pack("<I", 5) + b"\0" * 16)
    with pytest.raises(ModelSourceError, match="binary version 5"):
        read_ct2_model(broken / "model.bin")
    with pytest.raises(ModelSourceError, match="no model.bin"):
        import_ct2(tmp_path, tmp_path / "out")
    with pytest.raises(ModelSourceError, match="already exists"):
        import_ct2(small_ct2_dirs["float16"], broken)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no half-written leftovers


def test_cli_converts_and_reports_errors(small_ct2_dirs, tmp_path, capsys):
    run = [sys.executable, "-m", "whisper_mtl.pretrained"]
    ok = subprocess.run(run + [str(small_ct2_dirs["float16"]), str(tmp_path / "hf")],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["out"] == str(tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "tokenizer.json").is_file()
    assert main([str(small_ct2_dirs["int8"]), str(tmp_path / "x")]) == 1  # in-process: one import is enough
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "int8" in err


def test_build_random_whisper(random_whisper_dir, tmp_path):
    model = WhisperForConditionalGeneration.from_pretrained(random_whisper_dir)
    config = model.config
    assert (config.d_model, config.encoder_layers, config.decoder_layers, config.num_mel_bins) == (64, 2, 2, 80)
    assert config.max_source_positions == 500 and config.vocab_size == 51864  # 10 s window, English-only
    assert model.generation_config.is_multilingual is False
    assert WhisperTokenizer.from_pretrained(random_whisper_dir).pad_token == "<|endoftext|>"
    # deterministic in its seed, different across seeds, and sizes are honoured
    same = WhisperForConditionalGeneration.from_pretrained(build_random_whisper(tmp_path / "same", seed=0))
    other = WhisperForConditionalGeneration.from_pretrained(build_random_whisper(tmp_path / "other", seed=1))
    weight = "model.decoder.layers.0.fc1.weight"
    assert torch.equal(same.state_dict()[weight], model.state_dict()[weight])
    assert not torch.equal(other.state_dict()[weight], model.state_dict()[weight])
    again = build_random_whisper(tmp_path / "again", d_model=32, heads=4, ffn_dim=64, window_seconds=5, n_mels=128)
    small = WhisperForConditionalGeneration.from_pretrained(again).config
    assert (small.d_model, small.encoder_attention_heads, small.max_source_positions, small.num_mel_bins) == (
        32, 4, 250, 128)
    with pytest.raises(ValueError, match="whole number of seconds"):
        build_random_whisper(tmp_path / "bad", window_seconds=2.5)
