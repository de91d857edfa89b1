"""WhisperMTL: masked pooling, standardised targets, one encoder pass per predicted batch, save/load in the
standard transformers layout (plain Whisper and the ASR pipeline load it), frozen encoder, checkpointing,
SpecAugment. Fast checks run on the small random Whisper; decoding checks on the real tiny.en."""

import json

import pytest
import torch
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, pipeline

from whisper_mtl.audio import load_audio, log_mel_spectrogram, mel_level_db, pad_or_trim
from whisper_mtl.data import read_manifest
from whisper_mtl.model import IntensityHead, MTLConfig, MTLOutput, Prediction, WhisperMTL
from whisper_mtl.pretrained import ModelSourceError


def _batch(clips, window):
    waves = [load_audio(c.audio) for c in clips]
    lengths = torch.tensor([w.numel() for w in waves], dtype=torch.long)
    return torch.stack([pad_or_trim(w, window) for w in waves]), lengths


@pytest.fixture(scope="module")
def tiny(tiny_en_dir):
    return WhisperMTL.from_pretrained(tiny_en_dir)


@pytest.fixture()
def small(random_whisper_dir):
    return WhisperMTL.from_pretrained(random_whisper_dir, head_dropout=0.0)


@pytest.fixture(scope="module")
def clips(synth_corpus):
    return read_manifest(synth_corpus[1])


def _labels(model, texts):
    rows = [model.prefix_token_ids()[1:] + model.tokenizer.encode(" " + t, add_special_tokens=False)
            + [model.tokenizer.eos_token_id] for t in texts]
    width = max(map(len, rows))
    return torch.tensor([r + [-100] * (width - len(r)) for r in rows])


def test_plain_whisper_starts_with_a_fresh_head(small, random_whisper_dir):
    assert small.config.head_trained is False and small.language is None
    assert small.prefix_token_ids() == [50257, 50362]  # English-only: no language/task tokens
    assert small.window_samples == 160_000 and small.n_mels == 80 and small.sample_rate == 16_000
    assert isinstance(small.whisper, WhisperForConditionalGeneration) and not isinstance(small, WhisperForConditionalGeneration)


def test_padding_never_changes_intensity(small, clips):
    """Masked pooling: garbage in the padded tail (waveform or hidden states) leaves intensity_db unchanged."""
    small.eval()
    small.intensity_head.net[-1].weight.data.normal_()  # a head whose output depends on its input
    waves, lengths = _batch(clips[:3], small.window_samples)
    noisy = waves.clone()
    for i, n in enumerate(lengths):
        noisy[i, n:] = 0.5 * torch.randn(small.window_samples - n)
    base = small.predict_intensity(waves, lengths)
    assert torch.equal(base, small.predict_intensity(noisy, lengths))
    # the pooling itself ignores padded frames, whatever the encoder put there
    hidden = small.encode(waves, lengths)
    garbage = hidden.clone()
    assert lengths.max() < 300 * 320  # clips are < 6 s = 300 encoder frames
    garbage[:, 300:] = 1e3
    assert torch.equal(small.pool(hidden, lengths), small.pool(garbage, lengths))
    assert not torch.allclose(small.pool(hidden, lengths), hidden.mean(1))  # ... unlike a plain mean
    # and a clip's result does not depend on its batch-mates
    alone = small.predict_intensity(waves[1:2], lengths[1:2])
    assert torch.allclose(alone, base[1:2], atol=1e-4)


def test_forward_loss_is_asr_plus_weighted_standardised_mse(small, clips):
    small.eval()
    waves, lengths = _batch(clips[:2], small.window_samples)
    labels = _labels(small, [c.text for c in clips[:2]])
    targets = torch.tensor([-25.0, -45.0])
    small.update_config(intensity_weight=0.5)
    out = small(waves, lengths, labels=labels, intensity=targets)
    assert isinstance(out, MTLOutput) and out.logits.shape == (2, labels.shape[1], 51864)
    # a fresh head predicts the input level (identity level path, zero-initialised MLP output), so the loss is
    # the MSE of (level - y) / std; the level is read off the log-mel of the real samples
    level = mel_level_db(log_mel_spectrogram(waves), lengths)
    assert torch.allclose(out.intensity_db, level, atol=1e-4)
    assert out.intensity_loss.item() == pytest.approx((((level - targets) / 10.0) ** 2).mean().item(), rel=1e-4)
    assert out.loss.item() == pytest.approx(out.asr_loss.item() + 0.5 * out.intensity_loss.item(), rel=1e-6)
    # ASR loss = token cross-entropy over real label positions only (-100 ignored)
    manual = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert out.asr_loss.item() == pytest.approx(manual.item(), rel=1e-5)
    small.with_target_stats(-20.0, 5.0, "lufs")
    assert small.config.unit == "LUFS"
    assert torch.allclose(small(waves, lengths).intensity_db, level, atol=1e-4)  # dB in, dB out, any stats
    assert small(waves, lengths).loss is None
    with pytest.raises(ValueError, match="target_std"):
        small.with_target_stats(-20.0, 0.0)
    with pytest.raises(ValueError, match="window_samples"):
        small(waves[:, :1000], lengths)


def test_head_runs_in_float32_under_autocast():
    head = IntensityHead(16, hidden=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert head(torch.randn(3, 16 + 1, dtype=torch.bfloat16)).dtype == torch.float32  # pooled [16] + level


def test_frozen_encoder_step_changes_no_encoder_weight(small, clips):
    small.train()
    small.freeze_encoder()
    encoder_before = {k: v.clone() for k, v in small.whisper.model.encoder.state_dict().items()}
    head_before = {k: v.clone() for k, v in small.intensity_head.state_dict().items()}
    waves, lengths = _batch(clips[:2], small.window_samples)
    trainable = [p for p in small.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=1e-2)
    out = small(waves, lengths, labels=_labels(small, [c.text for c in clips[:2]]), intensity=torch.tensor([-20.0, -40.0]))
    out.loss.backward()
    optimiser.step()
    assert all(p.grad is None for p in small.whisper.model.encoder.parameters())
    for k, v in small.whisper.model.encoder.state_dict().items():
        assert torch.equal(v, encoder_before[k]), k
    assert any(not torch.equal(v, head_before[k]) for k, v in small.intensity_head.state_dict().items())


def test_gradient_checkpointing_gives_the_same_gradients(random_whisper_dir, clips):
    waves, lengths = _batch(clips[:2], 160_000)
    grads = []
    for checkpointing in (False, True):
        model = WhisperMTL.from_pretrained(random_whisper_dir, head_dropout=0.0).train()
        if checkpointing:
            model.enable_gradient_checkpointing()
            assert model.whisper.model.encoder.gradient_checkpointing
        out = model(waves, lengths, labels=_labels(model, [c.text for c in clips[:2]]),
                    intensity=torch.tensor([-20.0, -40.0]))
        out.loss.backward()
        grads.append(model.whisper.model.encoder.layers[0].fc1.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_spec_augment_follows_the_whisper_config(small, clips):
    waves, lengths = _batch(clips[:2], small.window_samples)
    small.whisper.config.apply_spec_augment = True
    small.whisper.config.mask_time_prob = 0.5
    small.whisper.config.mask_feature_prob = 0.5
    small.train()
    torch.manual_seed(0)
    augmented = small.features(waves, lengths)
    small.eval()
    clean = small.features(waves, lengths)
    assert not torch.equal(augmented, clean) and (augmented == 0).any()
    small.whisper.config.apply_spec_augment = False
    small.train()
    assert torch.equal(small.features(waves, lengths), clean)


def test_features_match_the_saved_feature_extractor(tiny, tiny_en_dir, clips):
    """The device-side log-mel equals what the checkpoint's own WhisperFeatureExtractor computes."""
    waves, lengths = _batch(clips[:2], tiny.window_samples)
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_en_dir)
    theirs = extractor([load_audio(c.audio).numpy() for c in clips[:2]], sampling_rate=16_000,
                       return_tensors="pt").input_features
    diff = (tiny.features(waves, lengths) - theirs).abs().max().item()
    assert diff <= 1e-4, diff


def test_predict_runs_the_encoder_once_per_batch(tiny, clips):
    waves, lengths = _batch(clips[:2], tiny.window_samples)
    calls = []
    hook = tiny.whisper.model.encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        greedy = tiny.predict(waves, lengths, max_new_tokens=40, no_speech=True)
        assert len(calls) == 1
        beam = tiny.predict(waves, lengths, num_beams=2, max_new_tokens=8)
        assert len(calls) == 2
    finally:
        hook.remove()
    assert len(greedy) == 2 and all(isinstance(p, Prediction) for p in greedy)
    level = mel_level_db(log_mel_spectrogram(waves), lengths)  # what a fresh head predicts
    for p, lv in zip(greedy, level.tolist()):
        assert p.text and p.tokens and max(p.tokens) < 50256  # text tokens only: no prefix, no end-of-text
        assert p.text == tiny.tokenizer.decode(p.tokens).strip()
        assert -5.0 < p.avg_logprob < 0.0 and p.intensity_db == pytest.approx(lv, abs=1e-4)
        assert p.no_speech_prob < 0.5  # speech, not silence
    assert all(b.text and 0 < len(b.tokens) <= 8 for b in beam)
    # (greedy predict == CTranslate2's own decoding of the same clips: tests/test_pretrained.py)


def test_save_load_round_trip(small, clips, tmp_path):
    """save -> load gives identical outputs, config and head included; overwriting is atomic and tidy."""
    small.eval()
    small.intensity_head.net[-1].weight.data.normal_(generator=torch.Generator().manual_seed(0))
    small.update_config(head_trained=True)
    small.with_target_stats(-28.0, 7.0)
    out = small.save_pretrained(tmp_path / "mtl")
    meta = json.loads((out / "whisper_mtl.json").read_text())
    assert meta["config"]["target_mean"] == -28.0 and meta["config"]["head_trained"] is True and meta["unit"] == "dBFS"
    small.save_pretrained(out)  # overwriting an existing checkpoint works and leaves no debris
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mtl"]

    loaded = WhisperMTL.from_pretrained(out)
    assert loaded.config == small.config and loaded.window_samples == small.window_samples
    waves, lengths = _batch(clips[:2], small.window_samples)
    ours = loaded.predict(waves, lengths, max_new_tokens=5)
    assert ours == small.predict(waves, lengths, max_new_tokens=5)
    assert ours[0].intensity_db != pytest.approx(-28.0)  # the saved (non-trivial) head came back
    assert torch.equal(loaded(waves, lengths).intensity_db, small(waves, lengths).intensity_db)
    overridden = WhisperMTL.from_pretrained(out, intensity_weight=0.25)
    assert overridden.config.intensity_weight == 0.25 and overridden.config.head_trained is True


def test_saved_tiny_en_loads_in_plain_whisper_and_the_pipeline(tiny, clips, tmp_path):
    """The saved folder is a standard transformers Whisper folder; the ASR pipeline transcribes a clip to
    the same text as WhisperMTL."""
    out = tiny.save_pretrained(tmp_path / "mtl")
    plain = WhisperForConditionalGeneration.from_pretrained(out)
    assert torch.equal(plain.model.encoder.conv1.weight, tiny.whisper.model.encoder.conv1.weight)
    waves, lengths = _batch(clips[:1], tiny.window_samples)
    ours = WhisperMTL.from_pretrained(out).predict(waves, lengths, max_new_tokens=40)[0].text
    # the pipeline defaults to 5 beams (as openai/whisper's CLI does): compare like with like, greedy
    asr = pipeline("automatic-speech-recognition", model=str(out), device="cpu")
    audio = load_audio(clips[0].audio).numpy()
    text = asr({"raw": audio, "sampling_rate": 16_000}, generate_kwargs={"num_beams": 1, "max_new_tokens": 40})["text"]
    assert ours and text.strip() == ours


def test_loading_errors_are_clear(tmp_path):
    with pytest.raises(ModelSourceError, match="neither a transformers"):
        WhisperMTL.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelSourceError, match="not a Whisper model"):
        WhisperMTL.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="target must be one of"):
        MTLConfig(target="peak")


def test_multilingual_prefix_and_decoding(random_whisper_dir):
    """A multilingual checkpoint decodes from <|sot|><|lang|><|transcribe|><|notimestamps|>."""
    whisper = WhisperForConditionalGeneration.from_pretrained(random_whisper_dir)
    ids = {t: 50258 + i for i, t in enumerate(["en", "zh", "de"])}  # the tokenizer's first language tokens
    whisper.generation_config.is_multilingual = True
    whisper.generation_config.lang_to_id = {f"<|{k}|>": v for k, v in ids.items()}
    whisper.generation_config.task_to_id = {"transcribe": 50358, "translate": 50357}
    from transformers import WhisperTokenizer

    model = WhisperMTL(whisper, WhisperTokenizer.from_pretrained(random_whisper_dir), language="de").eval()
    assert model.prefix_token_ids() == [50257, ids["de"], 50358, 50362]
    seen = []
    hook = model.whisper.model.decoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].clone()), with_kwargs=True)
    try:
        model.predict(torch.zeros(1, model.window_samples), torch.tensor([16_000]), max_new_tokens=2)
    finally:
        hook.remove()
    assert seen[0][0, :4].tolist() == model.prefix_token_ids()
    with pytest.raises(ValueError, match="English-only"):
        WhisperMTL(WhisperForConditionalGeneration.from_pretrained(random_whisper_dir),
                   WhisperTokenizer.from_pretrained(random_whisper_dir), language="de")


def test_greedy_avg_logprob_is_over_the_tokens_whispers_rules_allow(tiny, clips):
    """Greedy avg_logprob = mean log-prob of the chosen tokens renormalised over the tokens Whisper's
    suppression rules allow (recorded while decoding): never below the raw model's log-prob of the same
    tokens (a teacher-forced pass), and close to it (the rules remove little probability mass)."""
    waves, lengths = _batch(clips[:3], tiny.window_samples)
    preds = tiny.predict(waves, lengths, max_new_tokens=40)
    prefix, eos = tiny.prefix_token_ids(), tiny.whisper.generation_config.eos_token_id
    with torch.no_grad():
        hidden = tiny.encode(waves, lengths)
        for i, p in enumerate(preds):
            ids = torch.tensor([prefix + p.tokens + [eos]])
            logits = tiny.whisper(encoder_outputs=(hidden[i : i + 1],), decoder_input_ids=ids[:, :-1]).logits
            raw = logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[0, len(prefix) - 1 :, 0].mean().item()
            assert raw - 1e-4 <= p.avg_logprob < raw + 0.05, (p.avg_logprob, raw)
    beams = tiny.predict(waves, lengths, num_beams=2, max_new_tokens=40)  # teacher-forced path: raw log-probs
    assert all(-5.0 < b.avg_logprob < 0.0 for b in beams)
