"""rohydr: a reproducible pipeline for RoHyDR, incomplete multimodal emotion recognition."""

__version__ = "0.1.0"

# One modality order everywhere in the project: text (l), audio (a), vision (v).
MODALITIES = ("l", "a", "v")
MODALITY_KEYS = {"l": "text", "a": "audio", "v": "vision"}
SPLITS = ("train", "valid", "test")
