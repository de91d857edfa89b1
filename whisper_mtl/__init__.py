"""whisper-mtl: fine-tune Whisper to transcribe speech and predict voice loudness in one forward pass."""

__version__ = "0.1.0"
