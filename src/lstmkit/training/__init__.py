"""The training core: one loop for every pipeline (device, precision, processes under
torchrun, AdamW, SGD or NT-ASGD with warm-up and cosine decay, clipping, budgets, evaluations, atomic
checkpoints with bit-exact resume, progress, metrics.csv and results.json)."""

from lstmkit.training.config import TrainingConfig, current_names
from lstmkit.training.device import Precision, resolve_device
from lstmkit.training.distributed import Processes
from lstmkit.training.job import Job
from lstmkit.training.loop import (Trainer, TrainingDiverged, TrainingRun, check_resumed_settings, check_run_folder,
                                  describe_runtime, run_files)
from lstmkit.training.schedule import decay_progress, learning_rate

__all__ = ["Job", "Precision", "Processes", "Trainer", "TrainingConfig", "TrainingDiverged", "TrainingRun",
           "check_resumed_settings", "check_run_folder", "current_names", "decay_progress", "describe_runtime",
           "learning_rate", "resolve_device", "run_files"]
