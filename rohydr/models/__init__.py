"""The RoHyDR model and its components (one module per component of the paper)."""
from rohydr.models.rohydr import Output, Recovery, RoHyDR

__all__ = ["Output", "Recovery", "RoHyDR"]
