"""Session-wide fixtures: the expensive things (the converted tiny.en, a small synthetic corpus) are
built once per test session and cached on disk under .cache/ so later sessions reuse them."""

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
os.environ.setdefault("WHISPER_MTL_CACHE", str(CACHE / "whisper_mtl"))
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_en_dir() -> Path:
    """The bundled Whisper tiny.en converted to transformers' layout (converted once, then cached)."""
    from whisper_mtl.pretrained import resolve_model

    return Path(resolve_model("tiny.en"))


@pytest.fixture(scope="session")
def random_whisper_dir(tmp_path_factory) -> Path:
    """A small random English-only Whisper with a 10 s window: fast enough for gradient tests."""
    from whisper_mtl.pretrained import build_random_whisper

    return build_random_whisper(tmp_path_factory.mktemp("random_whisper"), window_seconds=10.0)


@pytest.fixture(scope="session")
def synth_corpus() -> tuple[Path, Path]:
    """A small synthetic eSpeak corpus (24 clips, seed 0): (train.jsonl, test.jsonl)."""
    from whisper_mtl.synth import synthesize_corpus

    out = CACHE / "synth_24_seed0"
    train, test = out / "train.jsonl", out / "test.jsonl"
    if not (train.exists() and test.exists()):
        train, test = synthesize_corpus(out, n=24, seed=0, progress=False)
    return Path(train), Path(test)
