"""The two end-to-end pipelines (optimized, baseline) behind one interface."""
from .base import STEPS, LipVideoJob, LipVideoResult, Pipeline

__all__ = ["STEPS", "LipVideoJob", "LipVideoResult", "Pipeline"]
