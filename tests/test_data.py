"""Manifests, LibriSpeech / Common Voice on disk, the LibriSpeech downloader, the lazy dataset with gain
augmentation, filtering and the collator."""

import hashlib
import http.server
import io
import json
import math
import subprocess
import sys
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from whisper_mtl.audio import SAMPLE_RATE, AudioError, load_audio
from whisper_mtl.data import (
    MAX_LABEL_TOKENS, PEAK_CEILING_DBFS, Clip, ManifestError, SpeechCollator, SpeechDataset, apply_gain,
    collate_speech, common_voice_clips, filter_clips, librispeech_clips, max_gain_db, read_manifest, write_manifest,
)
from whisper_mtl.download import DownloadError, download_librispeech, fetch
from whisper_mtl.loudness import LoudnessError, lufs, rms_dbfs


def speechlike(seconds: float, seed: int = 0, peak: float = 0.5) -> np.ndarray:
    """Amplitude-modulated noise bursts: loudness behaves like speech (gating matters for LUFS)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = rng.standard_normal(t.size) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    return (x / np.abs(x).max() * peak).astype(np.float32)


def write_wav(path: Path, wave: np.ndarray, rate: int = SAMPLE_RATE, fmt: str | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, rate, format=fmt)
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(tiny_en_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_en_dir)


@pytest.fixture(scope="module")
def multilingual_tokenizer(tiny_en_dir):
    # The tiny.en vocabulary has the language and task tokens; a tokenizer set to English transcription
    # gives the multilingual prefix <|startoftranscript|><|en|><|transcribe|><|notimestamps|>.
    from transformers import WhisperTokenizer

    return WhisperTokenizer.from_pretrained(tiny_en_dir, language="en", task="transcribe")


# --------------------------------------------------------------------------------------------------
# Manifests

def test_manifest_round_trip_resolves_relative_paths(tmp_path):
    manifest = tmp_path / "sub" / "m.jsonl"
    manifest.parent.mkdir()
    write_manifest(manifest, [Clip("a.flac", "Hello there."), Clip("/abs/b.wav", "Second.", intensity=3.5, duration=2.0)])
    clips = read_manifest(manifest)
    assert clips == [Clip(str(tmp_path / "sub" / "a.flac"), "Hello there."),
                     Clip("/abs/b.wav", "Second.", intensity=3.5, duration=2.0)]


@pytest.mark.parametrize("line, cause", [
    ('{"audio": "a.wav", "text": "ok"', "invalid JSON"),
    ('["a.wav", "text"]', "expected a JSON object"),
    ('{"text": "no audio"}', '"audio" must be'),
    ('{"audio": "a.wav"}', '"text" must be a string'),
    ('{"audio": "a.wav", "text": 5}', '"text" must be a string'),
    ('{"audio": "a.wav", "text": "x", "intensity": "loud"}', '"intensity" must be a finite number'),
    ('{"audio": "a.wav", "text": "x", "intensity": true}', '"intensity" must be a finite number'),
    ('{"audio": "a.wav", "text": "x", "intensity": NaN}', '"intensity" must be a finite number'),
    ('{"audio": "a.wav", "text": "x", "duration": -1}', '"duration" must be > 0'),
])
def test_manifest_errors_name_the_line_and_cause(tmp_path, line, cause):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio": "ok.wav", "text": "fine"}\n\n' + line + "\n")
    with pytest.raises(ManifestError) as err:
        read_manifest(manifest)
    message = str(err.value)
    assert message.startswith(f"{manifest}:3: ") and cause in message and "\n" not in message


def test_manifest_missing_or_empty(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ManifestError, match="empty manifest"):
        read_manifest(tmp_path / "empty.jsonl")


# --------------------------------------------------------------------------------------------------
# Corpora on disk

def make_librispeech(root: Path, split: str) -> dict[str, str]:
    """A tiny LibriSpeech split in the official layout; returns {utterance id: transcript}."""
    utterances = {"84-121123-0000": "GO DO YOU HEAR", "84-121123-0001": "BUT IN LESS THAN FIVE MINUTES",
                  "174-50561-0000": "FORGOTTEN TOO THE NAME OF GILLIAN THE LOVELY CAPTIVE"}
    for i, (utt, text) in enumerate(utterances.items()):
        speaker, chapter, _ = utt.split("-")
        folder = root / "LibriSpeech" / split / speaker / chapter
        write_wav(folder / f"{utt}.flac", speechlike(0.5 + 0.1 * i, seed=i), fmt="FLAC")
        with open(folder / f"{speaker}-{chapter}.trans.txt", "a") as f:
            f.write(f"{utt} {text}\n")
    return utterances


def test_librispeech_layout(tmp_path, capsys):
    utterances = make_librispeech(tmp_path, "dev-clean")
    # A transcript line without audio is reported and left out.
    with open(tmp_path / "LibriSpeech/dev-clean/84/121123/84-121123.trans.txt", "a") as f:
        f.write("84-121123-0009 NO AUDIO FOR THIS ONE\n")
    for root in (tmp_path, tmp_path / "LibriSpeech"):  # the parent folder or LibriSpeech/ itself
        clips = librispeech_clips(root, "dev-clean")
        assert [Path(c.audio).stem for c in clips] == sorted(utterances)
        assert {Path(c.audio).stem: c.text for c in clips} == {u: t.lower() for u, t in utterances.items()}
        assert all(load_audio(c.audio).numel() > 0 for c in clips)
    assert "1 transcript line(s) have no audio" in capsys.readouterr().err
    assert librispeech_clips(tmp_path, "dev-clean", lowercase=False)[0].text == utterances["174-50561-0000"]
    with pytest.raises(ManifestError, match="no LibriSpeech split 'test-clean'"):
        librispeech_clips(tmp_path, "test-clean")


def test_common_voice_layout(tmp_path, capsys):
    root = tmp_path / "cv-corpus-17.0" / "en"
    header = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"
    rows = [("c1", "common_voice_en_1.mp3", 'He said "hello" to me.'), ("c2", "common_voice_en_2.mp3", "It's fine, thanks."),
            ("c3", "common_voice_en_3.mp3", "")]
    lines = [header] + [f"{c}\t{p}\ts{i}\t{s}\t\t2\t0\t\t\t\t\ten\t" for i, (c, p, s) in enumerate(rows)]
    root.mkdir(parents=True)
    (root / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for _, name, _ in rows:
        write_wav(root / "clips" / name, speechlike(0.6), fmt="MP3")
    clips = common_voice_clips(root, "test")
    assert [c.text for c in clips] == ['He said "hello" to me.', "It's fine, thanks."]  # quotes are text
    assert clips[0].audio == str(root / "clips" / "common_voice_en_1.mp3")
    assert load_audio(clips[1].audio).numel() > 0.5 * SAMPLE_RATE  # MP3 decodes
    assert "1 row(s) with an empty sentence" in capsys.readouterr().err
    with pytest.raises(ManifestError, match="dev.tsv: no such file"):
        common_voice_clips(root, "dev")
    (root / "train.tsv").write_text("client_id\tpath\n")
    with pytest.raises(ManifestError, match=r"train.tsv:1: missing column 'sentence'"):
        common_voice_clips(root, "train")


def test_data_cli_writes_manifest(tmp_path):
    make_librispeech(tmp_path, "dev-clean")
    out = tmp_path / "dev.jsonl"
    run = subprocess.run([sys.executable, "-m", "whisper_mtl.data", "librispeech", str(tmp_path), "dev-clean", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["clips"] == 3 and len(read_manifest(out)) == 3
    bad = subprocess.run([sys.executable, "-m", "whisper_mtl.data", "librispeech", str(tmp_path), "nope", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "'nope'" in bad.stderr


# --------------------------------------------------------------------------------------------------
# Download

def make_tarball(tmp_path: Path, subset: str) -> tuple[Path, str]:
    src = tmp_path / "src"
    make_librispeech(src, subset)
    (src / "LibriSpeech" / "README.TXT").write_text("LibriSpeech test copy\n")
    tarball = tmp_path / "mirror" / f"{subset}.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src / "LibriSpeech", arcname="LibriSpeech")
    return tarball, hashlib.sha256(tarball.read_bytes()).hexdigest()


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """http.server with byte ranges (as OpenSLR's server has), so resuming is exercised for real."""

    ranges_seen: list = []

    def log_message(self, *args):
        pass

    def send_head(self):
        spec = self.headers.get("Range")
        if not spec:
            return super().send_head()
        path = Path(self.translate_path(self.path))
        data = path.read_bytes()
        start = int(spec.removeprefix("bytes=").split("-")[0])
        RangeHandler.ranges_seen.append(start)
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        return io.BytesIO(data[start:])


@pytest.fixture
def served(tmp_path):
    def serve(folder: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    servers = []
    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_download_from_local_folder_verifies_and_extracts(tmp_path):
    tarball, digest = make_tarball(tmp_path, "dev-clean")
    dest = tmp_path / "data"
    [folder] = download_librispeech(dest, ["dev-clean"], mirror=str(tarball.parent), sha256={"dev-clean": digest},
                                    progress=False)
    assert folder == dest / "LibriSpeech" / "dev-clean"
    assert len(librispeech_clips(dest, "dev-clean")) == 3
    assert (dest / "LibriSpeech" / "README.TXT").exists()
    assert not list(dest.glob(".extract-*"))
    # Running again skips the finished subset even without its tarball.
    (dest / "dev-clean.tar.gz").unlink()
    assert download_librispeech(dest, ["dev-clean"], mirror="/nonexistent", sha256={"dev-clean": digest},
                                progress=False) == [folder]


def test_download_over_http_resumes_a_partial_file(tmp_path, served):
    tarball, digest = make_tarball(tmp_path, "test-clean")
    url = served(tarball.parent)
    dest = tmp_path / "data"
    dest.mkdir()
    data = tarball.read_bytes()
    (dest / "test-clean.tar.gz.part").write_bytes(data[: len(data) // 2])  # an interrupted earlier run
    RangeHandler.ranges_seen = []
    [folder] = download_librispeech(dest, ["test-clean"], mirror=url, sha256={"test-clean": digest}, progress=False)
    assert RangeHandler.ranges_seen == [len(data) // 2]
    assert (dest / "test-clean.tar.gz").read_bytes() == data
    assert sorted(p.name for p in folder.glob("*/*/*.flac")) == sorted(f"{u}.flac" for u in make_librispeech(tmp_path / "x", "y"))


def test_download_rejects_a_corrupt_tarball(tmp_path, served):
    tarball, digest = make_tarball(tmp_path, "dev-clean")
    corrupt = bytearray(tarball.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    tarball.write_bytes(bytes(corrupt))
    dest = tmp_path / "data"
    with pytest.raises(DownloadError, match="SHA-256 .* does not match"):
        download_librispeech(dest, ["dev-clean"], mirror=served(tarball.parent), sha256={"dev-clean": digest},
                             progress=False)
    assert not (dest / "dev-clean.tar.gz").exists()  # deleted, so the next run fetches afresh
    assert not (dest / "LibriSpeech").exists()
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(served(tarball.parent) + "/missing.tar.gz", dest / "missing.tar.gz", progress=False)
    with pytest.raises(DownloadError, match="unknown LibriSpeech subset"):
        download_librispeech(dest, ["dev-dirty"], progress=False)


# --------------------------------------------------------------------------------------------------
# Dataset and gain augmentation

@pytest.fixture
def level_clips(tmp_path):
    """Clips at different levels; one peaks at 0.99 (no headroom)."""
    return [Clip(write_wav(tmp_path / f"{i}.wav", speechlike(1.0 + 0.3 * i, seed=i, peak=p), fmt="WAV"), f"clip {i}")
            for i, p in enumerate([0.99, 0.5, 0.05, 0.2])]


@pytest.mark.parametrize("target, meter", [("rms_dbfs", rms_dbfs), ("lufs", lufs)])
def test_gain_augmentation_shifts_target_by_exactly_the_gain_and_never_clips(level_clips, target, meter):
    plain = SpeechDataset(level_clips, target=target)
    augmented = SpeechDataset(level_clips, target=target, gain_db=12.0, seed=7)
    gains = []
    for epoch in range(3):
        augmented.set_epoch(epoch)
        for i in range(len(level_clips)):
            base, item = plain[i], augmented[i]
            assert base["gain_db"] == 0.0 and torch.equal(base["wave"], load_audio(level_clips[i].audio))
            assert base["target"] == pytest.approx(meter(base["wave"]), abs=1e-9)
            gain = item["gain_db"]
            assert -12.0 <= gain <= 12.0
            assert item["target"] == base["target"] + gain  # exactly
            assert meter(item["wave"]) == pytest.approx(item["target"], abs=1e-3)  # and it is what the model hears
            assert float(item["wave"].abs().max()) <= 10 ** (PEAK_CEILING_DBFS / 20) + 1e-6 < 1.0  # never clips
            gains.append(gain)
    assert max(gains) - min(gains) > 10.0
    assert gains[0] <= max_gain_db(load_audio(level_clips[0].audio), PEAK_CEILING_DBFS) < 0.1  # clip 0 has no headroom
    # Deterministic given (seed, epoch, index); a new epoch draws new gains.
    augmented.set_epoch(1)
    again = [augmented[i]["gain_db"] for i in range(len(level_clips))]
    assert again == gains[4:8] and again != gains[:4]


def test_apply_gain_and_headroom():
    wave = torch.tensor([0.5, -0.25, 0.0])
    assert torch.allclose(apply_gain(wave, 20 * math.log10(2)), torch.tensor([1.0, -0.5, 0.0]))
    assert max_gain_db(wave) == pytest.approx(20 * math.log10(2))
    assert max_gain_db(np.zeros(4)) == math.inf
    x = np.array([0.1, -0.2], dtype=np.float32)
    assert apply_gain(x, 6.0).dtype == np.float32
    assert rms_dbfs(apply_gain(x, -7.5)) == pytest.approx(rms_dbfs(x) - 7.5, abs=1e-5)


def test_dataset_is_lazy_and_names_bad_files(tmp_path, level_clips):
    missing = Clip(str(tmp_path / "gone.flac"), "x")
    dataset = SpeechDataset([missing] * 100_000 + level_clips)  # constructing decodes nothing
    assert len(dataset) == 100_004
    with pytest.raises(AudioError, match="gone.flac: no such file"):
        dataset[0]
    silent = Clip(write_wav(tmp_path / "silent.wav", np.zeros(SAMPLE_RATE, np.float32), fmt="WAV"), "x")
    with pytest.raises(LoudnessError, match="silent.wav: digital silence"):
        SpeechDataset([silent])[0]


def test_external_intensity_label_replaces_the_target(level_clips):
    labelled = [Clip(c.audio, c.text, intensity=4.0 + i) for i, c in enumerate(level_clips)]
    dataset = SpeechDataset(labelled, target="lufs")
    assert [dataset[i]["target"] for i in range(4)] == [4.0, 5.0, 6.0, 7.0]
    with pytest.raises(ValueError, match="external intensity label"):
        SpeechDataset(labelled, gain_db=6.0)
    with pytest.raises(ValueError, match="unknown loudness target"):
        SpeechDataset(level_clips, target="db")


# --------------------------------------------------------------------------------------------------
# Filtering

def test_filter_clips_counts_each_reason(tmp_path, tokenizer, capsys):
    ok = [Clip(write_wav(tmp_path / f"ok{i}.wav", speechlike(1.0, seed=i), fmt="WAV"), "a short sentence") for i in range(3)]
    too_long_audio = Clip(write_wav(tmp_path / "long.wav", speechlike(2.5), fmt="WAV"), "fine")
    too_long_text = Clip(ok[0].audio, " ".join(["word"] * 500))
    silent = Clip(write_wav(tmp_path / "silent.wav", np.zeros(SAMPLE_RATE, np.float32), fmt="WAV"), "nothing")
    short = Clip(write_wav(tmp_path / "short.wav", speechlike(0.3), fmt="WAV"), "hi")  # RMS fine, LUFS undefined
    unreadable = Clip(str(tmp_path / "missing.flac"), "gone")
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really a wav file")
    junk = Clip(str(tmp_path / "junk.wav"), "junk")
    labelled_silent = Clip(silent.audio, "labelled", intensity=1.0)  # external label: its target is defined
    clips = ok + [too_long_audio, too_long_text, silent, short, unreadable, junk, labelled_silent]
    window = 2 * SAMPLE_RATE

    kept, counts = filter_clips(clips, tokenizer, window, "rms_dbfs")
    assert counts == {"unreadable audio": 2, "longer than the window": 1, "transcript too long": 1, "target undefined": 1}
    assert kept == [Clip(c.audio, c.text, c.intensity, d) for c, d in zip(ok + [short, labelled_silent], [1.0, 1.0, 1.0, 0.3, 1.0])]
    out = capsys.readouterr()
    assert "kept 5 of 10 clips; left out 5" in out.out and "missing.flac" in out.err

    kept, counts = filter_clips(clips, tokenizer, window, "lufs")
    assert counts["target undefined"] == 2 and len(kept) == 4  # the 0.3 s clip too

    # The token limit counts the prefix: a transcript exactly at the limit is kept, one more token is not.
    prefix = list(tokenizer.prefix_tokens)
    n_text = MAX_LABEL_TOKENS - len(prefix)
    at_limit = Clip(ok[0].audio, "word" + " word" * (n_text - 1))
    assert len(tokenizer.encode(" " + at_limit.text, add_special_tokens=False)) == n_text
    over = Clip(ok[0].audio, at_limit.text + " word")
    kept, counts = filter_clips([at_limit, over], tokenizer, window, "rms_dbfs", prefix_ids=prefix, verbose=False)
    assert kept[0].text == at_limit.text and counts["transcript too long"] == 1

    # decode=False trusts durations / headers (fast path for big corpora).
    kept, counts = filter_clips(ok + [too_long_audio, unreadable], tokenizer, window, "rms_dbfs", decode=False, verbose=False)
    assert len(kept) == 3 and counts["longer than the window"] == 1 and counts["unreadable audio"] == 1


# --------------------------------------------------------------------------------------------------
# Collator

def check_labels(batch, tokenizer, prefix_ids, texts):
    labels = batch["labels"]
    sot, eos = tokenizer.convert_tokens_to_ids("<|startoftranscript|>"), tokenizer.eos_token_id
    assert eos == tokenizer.pad_token_id  # the trap this collator exists to avoid
    for row, text in zip(labels.tolist(), texts):
        real = [t for t in row if t != -100]
        assert row[: len(real)] == real and set(row[len(real):]) <= {-100}  # padding only after the end
        assert real[: len(prefix_ids) - 1] == prefix_ids[1:] and sot not in real
        assert real[-1] == eos and real.count(eos) == 1  # eos kept, exactly once
        assert tokenizer.decode(real, skip_special_tokens=True).strip() == text
    assert (labels == -100).any()  # the batch really had padding


@pytest.mark.parametrize("which", ["english_only", "multilingual"])
def test_collator_labels_keep_eos_mask_padding_and_decode_back(which, tokenizer, multilingual_tokenizer, synth_corpus):
    tok = tokenizer if which == "english_only" else multilingual_tokenizer
    prefix = list(tok.prefix_tokens)
    expected = ["<|startoftranscript|>", "<|notimestamps|>"] if which == "english_only" else \
        ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    assert tok.convert_ids_to_tokens(prefix) == expected
    dataset = SpeechDataset(read_manifest(synth_corpus[1]), target="rms_dbfs")
    items = [dataset[i] for i in range(len(dataset))]
    window = 10 * SAMPLE_RATE
    batch = SpeechCollator(tok, prefix, window)(items)
    texts = [it["text"] for it in items]
    assert batch["texts"] == texts and batch["paths"] == [it["path"] for it in items]
    check_labels(batch, tok, prefix, texts)
    assert batch["waves"].shape == (len(items), window) and batch["waves"].dtype == torch.float32
    assert batch["lengths"].dtype == torch.int64
    for b, it in enumerate(items):
        n = int(batch["lengths"][b])
        assert n == it["wave"].shape[0]
        assert torch.equal(batch["waves"][b, :n], it["wave"]) and not batch["waves"][b, n:].any()
    assert batch["intensity"].dtype == torch.float32
    assert torch.allclose(batch["intensity"], torch.tensor([it["target"] for it in items]))
    # What transformers' Whisper feeds the decoder: <|startoftranscript|> + the prefix, once.
    from transformers.models.whisper.modeling_whisper import shift_tokens_right

    sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
    decoder_in = shift_tokens_right(batch["labels"], tok.pad_token_id, sot)
    assert decoder_in[:, : len(prefix)].tolist() == [prefix] * len(items)
    assert collate_speech(items, tok, prefix, window)["labels"].equal(batch["labels"])


def test_collator_rejects_bad_input(tokenizer):
    prefix = list(tokenizer.prefix_tokens)
    with pytest.raises(ValueError, match="must start with <\\|startoftranscript\\|>"):
        SpeechCollator(tokenizer, prefix[1:], SAMPLE_RATE)
    item = {"wave": torch.zeros(SAMPLE_RATE + 1), "text": "x", "target": -20.0, "path": "long.flac", "gain_db": 0.0}
    with pytest.raises(ValueError, match="long.flac: 1.00 s is longer than the model's 1.00 s window"):
        SpeechCollator(tokenizer, prefix, SAMPLE_RATE)([item])
    item = dict(item, wave=torch.ones(10), target=None)
    assert SpeechCollator(tokenizer, prefix, SAMPLE_RATE)([item])["intensity"] is None


def test_dataloader_end_to_end(synth_corpus, tokenizer):
    dataset = SpeechDataset(read_manifest(synth_corpus[0]), gain_db=6.0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=SpeechCollator(
        tokenizer, list(tokenizer.prefix_tokens), 30 * SAMPLE_RATE))
    batches = list(loader)
    assert sum(len(b["texts"]) for b in batches) == len(dataset)
    assert all(b["waves"].shape[1] == 30 * SAMPLE_RATE and torch.isfinite(b["intensity"]).all() for b in batches)
