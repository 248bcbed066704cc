"""rohydr: a reproducible pipeline for RoHyDR, incomplete multimodal emotion recognition.

Layers, each importing only from those before it: core (vocabulary, configuration, runtime, metrics),
kernels and data, models, training, evaluation, reporting; the command line and the benchmark on top.
"""

__version__ = "0.1.0"
