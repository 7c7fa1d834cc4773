"""Machine translation from Python, step for step what `lstmkit translate train / run / eval` do.

    from lstmkit import translate
    data = "../shared/data/multi30k"
    run = translate.train(f"{data}/train.de.gz", f"{data}/train.en.gz", f"{data}/val.de.gz", f"{data}/val.en.gz",
                          "runs/de-en", translate.TrainingConfig(time_budget=3600))
    model = translate.load("runs/de-en")
    print(model.translate(["Ein Hund läuft über eine Wiese."], beam=5))
    scores = model.score(sources, references)          # scores.bleu, scores.chrf, scores.signature
"""

from lstmkit.extras import extra_imports

with extra_imports("translate", __name__):
    from lstmkit.pipelines.translate import TranslationConfig as TrainingConfig
    from lstmkit.pipelines.translate import TranslationRun, TranslationScores, Translator
    from lstmkit.pipelines.translate import load_translator as load
    from lstmkit.pipelines.translate import train_translation as train

__all__ = ["TrainingConfig", "TranslationRun", "TranslationScores", "Translator", "load", "train"]
