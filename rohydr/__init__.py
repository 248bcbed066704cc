"""rohydr: a reproducible pipeline for RoHyDR, incomplete multimodal emotion recognition."""

__version__ = "0.1.0"

# One modality order everywhere in the project: text (l), audio (a), vision (v).
MODALITIES = ("l", "a", "v")
MODALITY_KEYS = {"l": "text", "a": "audio", "v": "vision"}
SPLITS = ("train", "valid", "test")
# The availability patterns, named by the modalities they keep.
PATTERN_NAMES = ("l", "a", "v", "la", "lv", "av", "complete")

# nominal missing rate -> (fraction of samples missing two modalities, fraction missing one); IMDer's protocol.
MR_FRACTIONS = {0.1: (0.1, 0.1), 0.2: (0.2, 0.2), 0.3: (0.3, 0.3), 0.4: (0.5, 0.2), 0.5: (0.7, 0.1),
                0.6: (0.9, 0.0), 0.7: (1.0, 0.0)}
