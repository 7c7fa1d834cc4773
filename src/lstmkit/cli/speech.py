"""`lstmkit speech fsdd / train / transcribe / eval`: speech recognition with CTC."""

from __future__ import annotations

import argparse
import sys
import unicodedata
from pathlib import Path

from lstmkit.warning_filters import warnings_filtered
from lstmkit.audio.manifest import read_manifest
from lstmkit.cells import CELL_NAMES
from lstmkit.cli.arguments import (
    add_regulariser_arguments, add_setting, add_training_arguments, audio_file, config_from, device_name,
    manifest_file, output_csv, output_figure, output_file, output_folder, positive_floats, positive_int, report_stream,
)
from lstmkit.engines import ENGINE_CHOICES
from lstmkit.training import check_resumed_settings, check_run_folder, describe_runtime, run_files
from lstmkit.training.device import check_runtime
from lstmkit.files import check_not_read, write_csv, write_json
from lstmkit.pipelines.configs import SpeechConfig
from lstmkit.training.progress import seconds_text
from lstmkit.training.distributed import announce


def fsdd_command(arguments: argparse.Namespace) -> None:
    from lstmkit.audio import fsdd_manifests

    counts = fsdd_manifests(arguments.recordings, arguments.out, arguments.holdout_speaker, arguments.connected,
                            arguments.seed)
    split = f"speaker {arguments.holdout_speaker} held out" if arguments.holdout_speaker else \
        "the dataset's split: recordings 0-4 test, 5-49 train"
    print(f"wrote {', '.join(f'{Path(arguments.out) / name} ({count} utterances)' for name, count in counts.items())}"
          f"; {split}")


def train_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.speech import SPEECH_MODEL, train_speech_model

    config = config_from(arguments, SpeechConfig)
    out = Path(arguments.out or Path("runs") / f"speech-{Path(arguments.manifest).stem}")
    check_runtime(config.device, config.precision, config.engine, config.cell)
    check_run_folder(out, arguments.resume, SPEECH_MODEL.name)
    if arguments.resume:  # before the command says a word (the pipeline checks again, for Python callers)
        check_resumed_settings(out, config)
    for manifest in (arguments.manifest, arguments.valid):  # every row, and its audio file, before the announcement
        if manifest is not None:
            with warnings_filtered("ignore"):  # the pipeline's own reading says them, once
                read_manifest(manifest)
    verb = "resuming" if arguments.resume else "training"
    announce(f"{verb} a bidirectional {config.num_layers}x{config.hidden_size} {config.cell} CTC model on "
             f"{arguments.manifest}; checkpoints in {out}/")
    run = train_speech_model(arguments.manifest, out, config, arguments.valid, arguments.resume)
    best = run.best or {}
    scored_on = "validation" if arguments.valid is not None else "on the training utterances"
    print(f"best {scored_on} (step {best.get('step')}): WER {best.get('val_wer', float('nan')):.2%}, "
          f"CER {best.get('val_cer', float('nan')):.2%}, accuracy {best.get('val_accuracy', float('nan')):.2%}")
    print(f"{run.steps:,} step{'s' * (run.steps != 1)} in {seconds_text(run.seconds)} s of training, "
          f"{run.utterances_per_second:,.1f} utterances/s "
          f"({describe_runtime(run.device, run.precision, run.processes)})")
    print(f"wrote {out}/best, {out}/last, {out}/metrics.csv and {out}/results.json")


def transcribe_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.speech import load_speech_model

    check_not_read({"--show": arguments.show},
                   {**{f"file {index} to transcribe": path for index, path in enumerate(arguments.files, 1)},
                    **run_files(arguments.directory)})
    recognizer = load_speech_model(arguments.directory, arguments.device)
    if arguments.show and len(arguments.files) != 1:
        raise ValueError(f"--show draws one file; got {len(arguments.files)}")
    for path in arguments.files:
        _, log_probs, rate = recognizer.posteriors(path)
        if rate is not None:
            print(f"lstmkit: {path} resampled from {rate} Hz to {recognizer.front_end.sample_rate} Hz, the model's "
                  "rate", file=sys.stderr)
        print(f"{path}\t{recognizer.decode(log_probs, arguments.beam, arguments.lexicon)}")
    if arguments.show:
        with warnings_filtered("ignore"):  # the file's warnings (a silent file) were said above, once
            recognizer.show(arguments.files[0], arguments.show, arguments.beam, arguments.lexicon)
        print(f"wrote {arguments.show}", file=sys.stderr)


def eval_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.speech import check_isolated_words, load_speech_model

    outputs = {"--json": arguments.json, "--out": arguments.out}
    check_not_read(outputs, {"the manifest": arguments.manifest, **run_files(arguments.directory)})
    with warnings_filtered("ignore"):  # the evaluation's own reading says them, once
        listed = read_manifest(arguments.manifest)
    check_not_read(outputs, {f"recording {index} of the manifest": utterance.path
                             for index, utterance in enumerate(listed, 1)})
    if arguments.confusion:  # before the decoding, which takes a while
        check_isolated_words([utterance.text for utterance in listed])
    recognizer = load_speech_model(arguments.directory, arguments.device)
    scores, references, transcripts = recognizer.evaluate(arguments.manifest, arguments.beam, arguments.lexicon)
    report = report_stream(arguments.json, arguments.out)
    print(f"WER {scores['wer']:.2%}, CER {scores['cer']:.2%}, accuracy {scores['accuracy']:.2%} "
          f"over {scores['utterances']} utterances", file=report)
    if arguments.confusion:
        from lstmkit.pipelines.speech import confusion_table

        print(confusion_table(references, transcripts), file=report)
    rows = list(zip((utterance.path for utterance in listed), references, transcripts,
                    strict=True))  # by file, in the manifest's order
    if arguments.errors:
        for path, reference, transcript in rows:
            if reference != transcript:
                print(error_line(path, reference, transcript), file=report)
    if arguments.json:
        write_json(arguments.json, {**scores, "beam": arguments.beam, "lexicon": arguments.lexicon})
        print(f"wrote {arguments.json}", file=report)
    if arguments.out:  # each utterance's transcript beside its reference (ESPnet's hyp and ref)
        write_csv(arguments.out, ("path", "reference", "transcript"), rows)
        print(f"wrote {arguments.out}", file=report)


def error_line(path, reference: str, transcript: str) -> str:
    """A transcript that differs from its reference, for --errors: escaped where the two look
    alike (a letter composed in one, decomposed in the other)."""
    look_alike = unicodedata.normalize("NFC", reference) == unicodedata.normalize("NFC", transcript)
    shown = ascii if look_alike else repr
    return f"  {path}: {shown(reference)} -> {shown(transcript)}"


def add_speech_commands(commands) -> None:
    speech = commands.add_parser("speech", help="speech recognition: a bidirectional LSTM with CTC") \
        .add_subparsers(dest="speech", required=True)

    fsdd = speech.add_parser("fsdd", help="write train.csv and test.csv manifests for the Free Spoken Digit Dataset")
    fsdd.add_argument("recordings", help="the folder of {digit}_{speaker}_{index}.wav files")
    fsdd.add_argument("--out", required=True, type=output_folder, help="where to write the manifests (and any joined utterances)")
    fsdd.add_argument("--holdout-speaker", help="test on every recording of this speaker, train on the others")
    fsdd.add_argument("--connected", type=positive_int, default=0,
                      help="also write utterances of 2 to N digits (N at least 2), joined from one speaker's "
                           "recordings")
    fsdd.add_argument("--seed", type=int, default=0, help="seed of the joins (default 0)")
    fsdd.set_defaults(run=fsdd_command, extra="speech")

    train = speech.add_parser("train", help="train a CTC recogniser on a manifest (path,text)")
    train.add_argument("manifest", type=manifest_file, help="a CSV with the columns path,text")
    train.add_argument("--valid", type=manifest_file, help="a manifest to score every --eval-every steps (default: the training one)")
    add_setting(train, SpeechConfig, "cell", "recurrent cell", choices=list(CELL_NAMES))
    add_setting(train, SpeechConfig, "num_layers", "bidirectional recurrent layers", type=positive_int)
    add_setting(train, SpeechConfig, "hidden_size", "hidden units per layer and direction", type=positive_int)
    add_setting(train, SpeechConfig, "stack", "frames stacked into one recurrent step", type=positive_int)
    add_setting(train, SpeechConfig, "dropout", "dropout between the layers", type=float)
    add_setting(train, SpeechConfig, "batch_size", "utterances per step", type=positive_int)
    add_setting(train, SpeechConfig, "sample_rate", "the model's sample rate; other files are resampled",
                type=positive_int)
    add_setting(train, SpeechConfig, "n_mels", "mel bands", type=positive_int)
    add_setting(train, SpeechConfig, "window_ms", "analysis window (ms)", type=float)
    add_setting(train, SpeechConfig, "hop_ms", "frame shift (ms)", type=float)
    add_setting(train, SpeechConfig, "beam", "decoding at evaluation: 1 greedy, more prefix beam search",
                type=positive_int)
    add_setting(train, SpeechConfig, "stop_when_perfect", "stop once every validation utterance is exact",
                action="store_true")
    add_setting(train, SpeechConfig, "frequency_warp",
                "VTLP: the training utterances' bands stretched or squeezed by up to this factor", type=float)
    add_setting(train, SpeechConfig, "speed_perturbation", "the training utterances also heard at these speeds, "
                "comma-separated (e.g. 0.9,1.1)", type=positive_floats)
    add_setting(train, SpeechConfig, "frequency_masks", "SpecAugment: masks of mel bands per training utterance",
                type=int)
    add_setting(train, SpeechConfig, "frequency_mask_width", "SpecAugment: the most bands one mask covers", type=int)
    add_setting(train, SpeechConfig, "time_masks", "SpecAugment: masks of frames per training utterance", type=int)
    add_setting(train, SpeechConfig, "time_mask_width",
                "SpecAugment: the most frames one mask covers (and at most a fifth of the utterance)", type=int)
    add_setting(train, SpeechConfig, "engine", "recurrent engine", choices=ENGINE_CHOICES)
    add_regulariser_arguments(train, SpeechConfig)
    add_training_arguments(train, SpeechConfig)
    train.add_argument("--out", type=output_folder, help="run folder (default runs/speech-MANIFESTNAME)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.set_defaults(run=train_command, extra="speech")

    for name, help_text in (("transcribe", "print the transcript of each audio file"),
                            ("eval", "WER, CER and exact-match accuracy of a model on a manifest")):
        command = speech.add_parser(name, help=help_text)
        command.add_argument("directory", help="a run folder (its best checkpoint) or a checkpoint folder")
        if name == "transcribe":
            command.add_argument("files", nargs="+", type=audio_file, help="audio files (WAV, FLAC, ...)")
            command.add_argument("--show", type=output_figure,
                                 help="draw spectrogram, label probabilities and alignment to this PNG (or .pdf, .svg)")
        else:
            command.add_argument("manifest", type=manifest_file, help="a CSV with the columns path,text")
            command.add_argument("--json", type=output_file,
                                 help="also write the scores (wer, cer and accuracy as fractions, utterances, beam, "
                                      "lexicon) here (-: stdout)")
            command.add_argument("--errors", action="store_true",
                                 help="list every utterance transcribed wrongly, by its file")
            command.add_argument("--out", type=output_csv,
                                 help="also write every utterance's transcript here: a CSV of "
                                      "path,reference,transcript (-: stdout)")
            command.add_argument("--confusion", action="store_true",
                                 help="print how often each word was transcribed as each (isolated words)")
        command.add_argument("--beam", type=positive_int, default=1,
                             help="1: greedy; more: prefix beam search (default 1)")
        command.add_argument("--lexicon", action="store_true",
                             help="write only words of the training transcripts (prefix beam search of --beam)")
        command.add_argument("--device", type=device_name, default="cpu", help="where to run the model (default cpu)")
        command.set_defaults(run=transcribe_command if name == "transcribe" else eval_command, extra="speech")
