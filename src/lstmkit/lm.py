"""Language modelling from Python, step for step what `lstmkit lm train / sample / eval` do.

    from lstmkit import lm
    run = lm.train("input.txt", "runs/shakespeare", lm.TrainingConfig(time_budget=1800))
    model = lm.load("runs/shakespeare")
    print(model.sample(prime="ROMEO:", length=300, temperature=0.8, seed=0))
    print(model.evaluate(open("other.txt", encoding="utf-8").read()))
"""

from lstmkit.pipelines.lm import LMRun, TextScores, TrainedLanguageModel
from lstmkit.pipelines.lm import LMTrainingConfig as TrainingConfig
from lstmkit.pipelines.lm import load_language_model as load
from lstmkit.pipelines.lm import train_language_model as train

__all__ = ["LMRun", "TextScores", "TrainedLanguageModel", "TrainingConfig", "load", "train"]
