"""Audio for speech recognition: manifests of utterances and the acoustic front end. The front
end's libraries (soundfile, librosa) come with the `speech` extra and load when first used."""

from lstmkit.audio.features import AudioError, FrontEnd, normalise
from lstmkit.audio.manifest import DIGITS, ManifestError, Utterance, fsdd_manifests, read_manifest, write_manifest

__all__ = ["DIGITS", "AudioError", "FrontEnd", "ManifestError", "Utterance", "fsdd_manifests", "normalise",
           "read_manifest", "write_manifest"]
