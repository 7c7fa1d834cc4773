"""Pipelines: a task read top to bottom (long-time-lag training, probes, the demo)."""
