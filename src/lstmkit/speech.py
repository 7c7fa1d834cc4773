"""Speech recognition from Python, step for step what `lstmkit speech fsdd / train / transcribe
/ eval` do.

    from lstmkit import speech
    speech.fsdd_manifests("../shared/data/fsdd/recordings", "data/fsdd")
    run = speech.train("data/fsdd/train.csv", "runs/digits", speech.SpeechConfig(time_budget=600),
                       validation="data/fsdd/test.csv")
    recognizer = speech.load("runs/digits")
    print(recognizer.transcribe("a.wav", beam=8, lexicon=True))
    scores, references, transcripts = recognizer.evaluate("data/fsdd/test.csv", beam=8, lexicon=True)
"""

from lstmkit.extras import extra_imports

with extra_imports("speech", __name__):
    from lstmkit.audio import FrontEnd, Utterance, fsdd_manifests, read_manifest, write_manifest
    from lstmkit.pipelines.speech import SpeechConfig, SpeechRecognizer, SpeechRun, score_transcripts
    from lstmkit.pipelines.speech import load_speech_model as load
    from lstmkit.pipelines.speech import train_speech_model as train

__all__ = ["FrontEnd", "SpeechConfig", "SpeechRecognizer", "SpeechRun", "Utterance", "fsdd_manifests", "load",
           "read_manifest", "score_transcripts", "train", "write_manifest"]
