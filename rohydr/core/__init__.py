"""The project's vocabulary and infrastructure, below every other layer: modalities, availability
patterns and conditions, run configuration, runtime (device, precision, seeding), metrics, errors,
file I/O and progress reporting."""
