"""The end-to-end demo of the SemiCS2 method (``umsynth demo``); imports torch."""
from umsynth.demo.pipeline import METRIC_FIELDS, STAGES, DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo", "STAGES", "METRIC_FIELDS"]
