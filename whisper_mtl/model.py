"""WhisperMTL: one Whisper, two jobs. Transcribe speech and predict how loud the voice is.

A composition, not a subclass: `self.whisper` is a plain transformers `WhisperForConditionalGeneration` (saved
in the standard layout, so `from_pretrained`/`pipeline` load it unchanged) and `self.intensity_head` is a small
head on the encoder's last hidden state, mean-pooled over the frames that hold real audio (Whisper pads every
clip to its window; pooling over the padding would dilute the signal with silence), plus the clip's level read
off the same log-mel the encoder gets (the encoder's final LayerNorm removes overall scale).

The head predicts the standardised target (y - mean) / std; mean, std, the target kind (rms_dbfs | lufs) and the
loss weight λ live in `MTLConfig`, saved with the model; predictions come out in dB (dBFS or LUFS).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from whisper_mtl.audio import HOP_LENGTH, SAMPLE_RATE, encoder_frames, log_mel_spectrogram, mel_level_db
from whisper_mtl.loudness import TARGETS, UNITS
from whisper_mtl.pretrained import ModelSourceError, resolve_model

logger = logging.getLogger(__name__)

HEAD_WEIGHTS = "intensity_head.safetensors"
MTL_CONFIG = "whisper_mtl.json"
FORMAT_VERSION = 2  # 2: the head also takes the input level
CONV_STRIDE = 2  # the encoder's second conv halves the mel frame rate
TIMESTAMP_SECONDS = 0.02  # one <|t.tt|> step of Whisper's timestamp tokens


@dataclass(frozen=True)
class MTLConfig:
    """Options of the multi-task model, saved with it in whisper_mtl.json.

    target: what the head predicts, "rms_dbfs" (dBFS) or "lufs" (LUFS, BS.1770 integrated loudness).
    target_mean, target_std: standardisation of the target, in dB (the head learns (y - mean) / std).
    intensity_weight: λ in loss = asr_loss + λ · intensity_loss (intensity_loss: MSE on standardised targets).
    head_hidden, head_dropout: the head MLP's width and dropout.
    head_trained: False while the head holds its fresh initialisation (its predictions mean nothing yet).
    """

    target: str = "rms_dbfs"
    target_mean: float = -30.0
    target_std: float = 10.0
    intensity_weight: float = 1.0
    head_hidden: int = 256
    head_dropout: float = 0.1
    head_trained: bool = False

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if not (math.isfinite(self.target_std) and self.target_std > 0):
            raise ValueError(f"target_std must be a positive number of dB, got {self.target_std}")
        if not math.isfinite(self.target_mean):
            raise ValueError(f"target_mean must be finite, got {self.target_mean}")
        if self.intensity_weight < 0:
            raise ValueError(f"intensity_weight (λ) must be >= 0, got {self.intensity_weight}")

    @property
    def unit(self) -> str:
        return UNITS[self.target]


class IntensityHead(nn.Module):
    """Head input [B, d + 1] (the mean-pooled encoder state, then the clip's standardised input level: see
    `WhisperMTL.head_input`) -> standardised loudness [B].

    Whisper's encoder ends in a LayerNorm that takes each frame's scale away, so the level reaches the head
    around the encoder: a linear path from the log-mel level (starting as the identity) plus an MLP on the
    encoder state and that level, which learns what the level alone misses (how the voice's spectrum meets
    the mel filters, noise, pauses, the K-weighting and gating of LUFS). Always computed in float32 (even
    under autocast): a regression output in half precision loses the dB resolution we care about."""

    def __init__(self, d_model: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.net = nn.Sequential(nn.Linear(d_model + 1, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))
        self.level = nn.Linear(1, 1)
        # Start as "loudness = input level": a sane first guess, a few dB off, and no huge initial loss.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        nn.init.ones_(self.level.weight)
        nn.init.zeros_(self.level.bias)

    def forward(self, head_input: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=head_input.device.type, enabled=False):
            x = head_input.float()
            pooled, level = x[:, :-1], x[:, -1:]
            return (self.level(level) + self.net(torch.cat([self.norm(pooled), level], dim=1))).squeeze(-1)


@dataclass(frozen=True)
class MTLOutput:
    """loss = asr_loss + λ·intensity_loss (None when neither labels nor targets were given); asr_loss is the
    token cross-entropy (nats/token); intensity_loss the MSE on standardised targets; intensity_db [B] in dB
    (dBFS or LUFS, see MTLConfig.target); logits [B, L, vocab] (None without labels)."""

    loss: torch.Tensor | None
    asr_loss: torch.Tensor | None
    intensity_loss: torch.Tensor | None
    intensity_db: torch.Tensor
    logits: torch.Tensor | None


@dataclass(frozen=True)
class Prediction:
    """One clip's result: text (stripped), text tokens (no prefix, no end-of-text), mean log-prob per generated
    token (nats, end-of-text included), predicted loudness in dB (dBFS or LUFS; meaningless until the model's
    config.head_trained is True), P(<|nospeech|>) at the first decoding step (None unless asked for), and in
    timestamp mode the last timestamp the model emitted (s from the clip's start; None otherwise)."""

    text: str
    tokens: list[int]
    avg_logprob: float
    intensity_db: float | None
    no_speech_prob: float | None
    timestamp_end: float | None = None


class _GreedyLogprobs:
    """A logits processor that changes nothing and records, at each greedy step, the log-prob of the token
    greedy decoding is about to pick: the max of log_softmax over the processed scores (it runs after
    Whisper's suppression and timestamp rules, so, as in openai/whisper, the probabilities are those of the
    tokens those rules allow). steps: one [B] tensor per generated token."""

    def __init__(self):
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        s = scores.float()
        self.steps.append(s.amax(-1) - s.logsumexp(-1))
        return scores


class WhisperMTL(nn.Module):
    """Whisper (ASR) + an intensity head on its encoder, sharing one encoder pass."""

    def __init__(self, whisper, tokenizer, config: MTLConfig = MTLConfig(), language: str | None = None):
        super().__init__()
        self.whisper = whisper
        self.tokenizer = tokenizer
        self.config = config
        self.intensity_head = IntensityHead(whisper.config.d_model, config.head_hidden, config.head_dropout)
        self.is_multilingual = bool(getattr(whisper.generation_config, "is_multilingual", False))
        if self.is_multilingual:
            language = language or "en"
            if tokenizer.convert_tokens_to_ids(f"<|{language}|>") in (None, tokenizer.unk_token_id):
                raise ValueError(f"language {language!r} is not a Whisper language code (e.g. 'en', 'de')")
            tokenizer.set_prefix_tokens(language=language, task="transcribe", predict_timestamps=False)
        elif language not in (None, "en"):
            raise ValueError(f"this Whisper checkpoint is English-only; language={language!r} is not possible")
        else:
            language = None
        self.language = language

    # ------------------------------------------------------------------ properties
    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def window_samples(self) -> int:
        """Samples in the model's window (480 000 = 30 s for OpenAI's checkpoints)."""
        return CONV_STRIDE * self.whisper.config.max_source_positions * HOP_LENGTH

    @property
    def n_mels(self) -> int:
        return self.whisper.config.num_mel_bins

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def with_target_stats(self, mean: float, std: float, target: str | None = None) -> None:
        """Set the target standardisation (dB) and, optionally, the target kind."""
        self.config = replace(self.config, target_mean=float(mean), target_std=float(std),
                              target=target or self.config.target)

    def update_config(self, **changes) -> None:
        """Replace MTLConfig fields (e.g. head_trained=True after training, intensity_weight=0.5)."""
        self.config = replace(self.config, **changes)

    def prefix_token_ids(self) -> list[int]:
        """<|startoftranscript|> [<|lang|> <|transcribe|>] <|notimestamps|>: what decoding starts from."""
        ids = self.tokenizer.convert_tokens_to_ids
        prefix = [ids("<|startoftranscript|>")]
        if self.is_multilingual:
            prefix += [ids(f"<|{self.language}|>"), ids("<|transcribe|>")]
        return prefix + [ids("<|notimestamps|>")]

    # ------------------------------------------------------------------ the shared encoder pass
    def features(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Waves [B, window_samples] float32 16 kHz -> log-mel [B, n_mels, 2·max_source_positions] on the
        model's device, SpecAugment applied in training mode when whisper.config.apply_spec_augment is set.
        Samples past each clip's length are zeroed first: whatever a caller padded with, the model sees the
        silence Whisper was trained on, and results never depend on the padding."""
        return self._augment(self._log_mel(waves, lengths), lengths)

    def _log_mel(self, waves: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if waves.dim() == 3:  # already log-mel features
            return waves.to(self.device)
        if waves.shape[-1] != self.window_samples:
            raise ValueError(f"waves must be padded to window_samples={self.window_samples}, got {waves.shape[-1]}")
        waves = waves.to(self.device, torch.float32)
        if lengths is not None:
            real = torch.arange(waves.shape[-1], device=waves.device)[None] < lengths.to(waves.device)[:, None]
            waves = waves * real
        return log_mel_spectrogram(waves, n_mels=self.n_mels)

    def _augment(self, mel: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if self.training and getattr(self.whisper.config, "apply_spec_augment", False):
            mask = None
            if lengths is not None:  # place time masks inside the real audio
                frames = torch.arange(mel.shape[-1], device=mel.device)
                mask = (frames[None] < (lengths.to(mel.device)[:, None] // HOP_LENGTH).clamp(min=1)).long()
            mel = self.whisper.model._mask_input_features(mel, attention_mask=mask)
        return mel.to(self.whisper.model.encoder.conv1.weight.dtype)

    def encode_with_level(self, waves: torch.Tensor, lengths: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """One log-mel, one encoder pass: (encoder last hidden state [B, frames/2, d], each clip's input level
        [B] in dB from `mel_level_db`, read before SpecAugment)."""
        mel = self._log_mel(waves, lengths)
        if lengths is None:
            lengths = torch.full((mel.shape[0],), mel.shape[-1] * HOP_LENGTH, device=mel.device)
        level_db = mel_level_db(mel, lengths)
        return self.whisper.model.encoder(self._augment(mel, lengths)).last_hidden_state, level_db

    def encode(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Waves [B, window_samples] (or log-mel [B, n_mels, frames]) -> encoder last hidden state [B, frames/2, d]."""
        return self.encode_with_level(waves, lengths)[0]

    def pool(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean of hidden [B, T, d] over each clip's real frames (ceil(samples / 320), 50 per second) -> [B, d]
        float32. Padding frames never contribute, whatever they hold."""
        n = encoder_frames(lengths.to(hidden.device).long()).clamp(1, hidden.shape[1])
        mask = (torch.arange(hidden.shape[1], device=hidden.device)[None] < n[:, None]).to(torch.float32)
        return (hidden.float() * mask[..., None]).sum(1) / n[:, None].to(torch.float32)

    def head_input(self, hidden: torch.Tensor, level_db: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """What the intensity head sees: [pool(hidden), standardised level] -> [B, d + 1] float32 (the level
        standardised like the target, so it enters on the scale the head predicts on)."""
        level = (level_db.float().to(hidden.device) - self.config.target_mean) / self.config.target_std
        return torch.cat([self.pool(hidden, lengths), level[:, None]], dim=1)

    def _intensity(self, hidden: torch.Tensor, level_db: torch.Tensor, lengths: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        standardised = self.intensity_head(self.head_input(hidden, level_db, lengths))
        return standardised, standardised * self.config.target_std + self.config.target_mean

    # ------------------------------------------------------------------ training
    def forward(self, waves: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor | None = None,
                intensity: torch.Tensor | None = None) -> MTLOutput:
        """waves [B, window_samples] (or log-mel [B, n_mels, frames]); lengths [B] real samples; labels [B, L]
        (prefix_token_ids()[1:] + text + eos, -100 where padded); intensity [B] targets in dB."""
        hidden, level_db = self.encode_with_level(waves, lengths)
        standardised, intensity_db = self._intensity(hidden, level_db, lengths)
        asr_loss = logits = intensity_loss = None
        if labels is not None:
            out = self.whisper(encoder_outputs=(hidden,), labels=labels.to(hidden.device), use_cache=False)
            asr_loss, logits = out.loss, out.logits
        if intensity is not None:
            target = (intensity.to(hidden.device, torch.float32) - self.config.target_mean) / self.config.target_std
            intensity_loss = F.mse_loss(standardised, target)
        loss = asr_loss
        if intensity_loss is not None:
            weighted = self.config.intensity_weight * intensity_loss
            loss = weighted if loss is None else loss + weighted
        return MTLOutput(loss=loss, asr_loss=asr_loss, intensity_loss=intensity_loss,
                         intensity_db=intensity_db, logits=logits)

    def freeze_encoder(self) -> None:
        """Stop gradients into the encoder (conv front end, positions, layers); decoder and head still learn."""
        for p in self.whisper.model.encoder.parameters():
            p.requires_grad_(False)

    def enable_gradient_checkpointing(self) -> None:
        """Trade compute for memory: recompute Whisper's layer activations in the backward pass."""
        if hasattr(self.whisper, "activation_checkpointing_enable"):  # transformers >= 5 (the old name is deprecated)
            self.whisper.activation_checkpointing_enable({"use_reentrant": False})
        else:
            self.whisper.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.whisper.config.use_cache = False

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, waves: torch.Tensor, lengths: torch.Tensor, num_beams: int = 1,
                max_new_tokens: int | None = None, no_speech: bool = False,
                timestamps: bool = False) -> list[Prediction]:
        """Transcribe a batch and predict its loudness with ONE encoder pass: the encoder output feeds both the
        head and `generate(encoder_outputs=...)` (greedy or beam search). no_speech=True also reports
        P(<|nospeech|>) from one extra decoder step (off by default: it costs a cross-attention pass).

        timestamps=True decodes in Whisper's timestamp mode (no <|notimestamps|>), the mode it was trained on
        for full 30 s windows: on long windows it drops far fewer sentences (tests/test_infer.py's 92 s clip:
        48.7 % WER plain, 27.8 % in timestamp mode with transcribe.py's continuation, 25.1 % per utterance).
        Text and tokens exclude the timestamp tokens. avg_logprob: mean log-prob per generated token (nats,
        end-of-text included) over the tokens Whisper's rules allow, recorded while decoding greedily; with
        beams, from one teacher-forced decoder pass over the winning tokens."""
        from transformers import GenerationMixin, LogitsProcessorList
        from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor
        from transformers.modeling_outputs import BaseModelOutput

        was_training = self.training
        self.eval()
        try:
            hidden, level_db = self.encode_with_level(waves, lengths)
            _, intensity_db = self._intensity(hidden, level_db, lengths)
            # The generic generate, not Whisper's: Whisper's splits its outputs clip by clip (hundreds of small
            # copies, half of a GPU batch's time) and in timestamp mode runs its long-form seek loop, which
            # cannot re-encode a shifted window from encoder outputs. The prompt is the whole decoder prefix;
            # Whisper's suppress_tokens / begin_suppress_tokens come from its generation_config as usual.
            prompt = self.prefix_token_ids()
            processors = LogitsProcessorList()
            if timestamps:  # one pass per window with Whisper's timestamp rules; transcribe.py seeks
                no_ts = self.tokenizer.convert_tokens_to_ids("<|notimestamps|>")
                prompt = [t for t in prompt if t != no_ts]
                processors.append(WhisperTimeStampLogitsProcessor(self.whisper.generation_config,
                                                                  begin_index=len(prompt)))
            greedy_logprobs = _GreedyLogprobs() if num_beams == 1 else None
            if greedy_logprobs is not None:
                processors.append(greedy_logprobs)  # custom processors run last, after Whisper's rules
            limit = self.whisper.config.max_target_positions - len(prompt)
            sequences = GenerationMixin.generate(
                self.whisper, encoder_outputs=BaseModelOutput(last_hidden_state=hidden), num_beams=num_beams,
                decoder_input_ids=torch.tensor([prompt] * hidden.shape[0], device=hidden.device),
                logits_processor=processors, max_new_tokens=min(max_new_tokens or limit, limit))
            tokens = self._generated_rows(sequences, prompt)
            if greedy_logprobs is not None:
                steps = torch.stack(greedy_logprobs.steps, dim=1).tolist()  # [B, generated steps]
                logprobs = [lp[: len(row)] for lp, row in zip(steps, tokens)]
            else:  # beams are reordered between steps: score the winners in one teacher-forced pass
                logprobs = self._rescored_logprobs(hidden, tokens, prompt)
            no_speech_probs = self._no_speech_probs(hidden) if no_speech else None
        finally:
            self.train(was_training)
        eos = self.whisper.generation_config.eos_token_id
        first_timestamp = self.tokenizer.convert_tokens_to_ids("<|notimestamps|>") + 1  # <|0.00|>
        head_db = intensity_db.tolist()
        predictions = []
        for i, (seq, lp) in enumerate(zip(tokens, logprobs)):
            text_tokens = [t for t in seq if t != eos and t < eos]  # drop end-of-text and any special token
            stamps = [t for t in seq if t >= first_timestamp]
            predictions.append(Prediction(
                timestamp_end=(stamps[-1] - first_timestamp) * TIMESTAMP_SECONDS if timestamps and stamps else None,
                text=self.tokenizer.decode(text_tokens, skip_special_tokens=True).strip(),
                tokens=text_tokens,
                avg_logprob=float(sum(lp) / max(len(lp), 1)),
                intensity_db=head_db[i],
                no_speech_prob=None if no_speech_probs is None else float(no_speech_probs[i]),
            ))
        return predictions

    def predict_intensity(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Loudness only (no decoding): [B] in dB (dBFS or LUFS), whether or not the head is trained."""
        with torch.no_grad():
            hidden, level_db = self.encode_with_level(waves, lengths)
            return self._intensity(hidden, level_db, lengths)[1]

    def _generated_rows(self, sequences: torch.Tensor, prompt: list[int]) -> list[list[int]]:
        """Per clip: generated ids (after the decoder prompt) up to and including end-of-text."""
        eos = self.whisper.generation_config.eos_token_id
        return [seq[: seq.index(eos) + 1] if eos in seq else seq for seq in sequences[:, len(prompt):].tolist()]

    def _rescored_logprobs(self, hidden: torch.Tensor, rows: list[list[int]], prompt: list[int]) -> list[list[float]]:
        """Per clip: each generated id's log-prob from one teacher-forced decoder pass over prompt + ids."""
        if not any(rows):
            return [[] for _ in rows]
        eos = self.whisper.generation_config.eos_token_id
        width = len(prompt) + max(len(r) for r in rows)
        ids = torch.full((len(rows), width), eos, dtype=torch.long, device=hidden.device)
        for i, r in enumerate(rows):
            ids[i, : len(prompt) + len(r)] = torch.tensor(prompt + r)
        logits = self.whisper(encoder_outputs=(hidden,), decoder_input_ids=ids[:, :-1], use_cache=False).logits
        logp = logits.float().log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        return [logp[i, len(prompt) - 1 : len(prompt) - 1 + len(r)].tolist() for i, r in enumerate(rows)]

    def _no_speech_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        ids = self.tokenizer.convert_tokens_to_ids
        no_speech_id = ids("<|nospeech|>")
        if no_speech_id in (None, self.tokenizer.unk_token_id):
            no_speech_id = ids("<|nocaptions|>")
        sot = torch.full((hidden.shape[0], 1), ids("<|startoftranscript|>"), device=hidden.device)
        logits = self.whisper(encoder_outputs=(hidden,), decoder_input_ids=sot, use_cache=False).logits
        return logits[:, 0].float().softmax(-1)[:, no_speech_id].cpu()

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, out_dir: str | os.PathLike) -> Path:
        """Write atomically: the Whisper part and its processor in transformers' layout, plus
        intensity_head.safetensors and whisper_mtl.json (MTLConfig, language, format version)."""
        from safetensors.torch import save_file
        from transformers import WhisperFeatureExtractor, WhisperProcessor

        out = Path(out_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            self.whisper.save_pretrained(tmp, safe_serialization=True)
            extractor = WhisperFeatureExtractor(
                feature_size=self.n_mels, sampling_rate=SAMPLE_RATE, hop_length=HOP_LENGTH,
                chunk_length=self.window_samples // SAMPLE_RATE)
            WhisperProcessor(feature_extractor=extractor, tokenizer=self.tokenizer).save_pretrained(tmp)
            head = {k: v.detach().float().cpu().contiguous() for k, v in self.intensity_head.state_dict().items()}
            save_file(head, str(tmp / HEAD_WEIGHTS))
            meta = {"format_version": FORMAT_VERSION, "config": asdict(self.config), "language": self.language,
                    "unit": self.config.unit}
            (tmp / MTL_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
            os.chmod(tmp, 0o755)
            old = None
            if out.exists():  # swap: the old checkpoint stays whole until the new one is in place
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                os.rename(out, old)
            os.rename(tmp, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    @classmethod
    def from_pretrained(cls, name: str | os.PathLike, language: str | None = None, **config_overrides) -> "WhisperMTL":
        """Load a saved WhisperMTL directory, or start from any Whisper `resolve_model` accepts (hub id,
        transformers dir, CTranslate2 dir, "tiny.en") with a fresh head (head_trained=False).
        config_overrides replace MTLConfig fields; language picks the language of a multilingual checkpoint."""
        from safetensors.torch import load_file
        from transformers import WhisperForConditionalGeneration, WhisperTokenizer

        source = resolve_model(name)
        local = Path(source)
        meta = None
        if local.is_dir():
            model_type = json.loads((local / "config.json").read_text()).get("model_type")
            if model_type != "whisper":
                raise ModelSourceError(f"{local}: not a Whisper model (model_type={model_type!r})")
            if (local / MTL_CONFIG).is_file():
                meta = json.loads((local / MTL_CONFIG).read_text())
                if meta.get("format_version") != FORMAT_VERSION:
                    raise ModelSourceError(f"{local}: {MTL_CONFIG} format_version {meta.get('format_version')} "
                                           f"is not {FORMAT_VERSION}")
        whisper = WhisperForConditionalGeneration.from_pretrained(source)
        tokenizer = WhisperTokenizer.from_pretrained(source)
        known = {f.name for f in fields(MTLConfig)}
        unknown = set(config_overrides) - known
        if unknown:
            raise TypeError(f"unknown MTLConfig field(s): {sorted(unknown)}")
        if meta is None:
            config = MTLConfig(**{**config_overrides, "head_trained": False})
            logger.warning("%s: plain Whisper checkpoint, the intensity head starts fresh (head_trained=False)", name)
        else:
            config = MTLConfig(**{**meta["config"], **config_overrides})
            language = language or meta.get("language")
        model = cls(whisper, tokenizer, config, language=language)
        if meta is not None:
            state = load_file(str(local / HEAD_WEIGHTS))
            try:
                model.intensity_head.load_state_dict(state)
            except RuntimeError as e:
                raise ModelSourceError(f"{local / HEAD_WEIGHTS}: does not fit the head ({str(e).splitlines()[0]})") from None
        return model.eval()
