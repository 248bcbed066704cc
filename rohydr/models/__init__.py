"""The RoHyDR model and its components (one module per component of the paper)."""
from rohydr.models.rohydr import GROUP_NAMES, Output, Recovery, RoHyDR

__all__ = ["GROUP_NAMES", "Output", "Recovery", "RoHyDR"]
