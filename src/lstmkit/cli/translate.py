"""`lstmkit translate train / run / eval`: machine translation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lstmkit.cells import CELL_NAMES
from lstmkit.cli.arguments import (
    add_regulariser_arguments, add_setting, add_training_arguments, config_from, device_name, output_figure,
    output_file, output_folder, positive_int, report_stream, sentence_file,
)
from lstmkit.engines import ENGINE_CHOICES
from lstmkit.training import check_resumed_settings, check_run_folder, describe_runtime, run_files
from lstmkit.training.device import check_runtime
from lstmkit.files import atomic_path, check_not_read, write_json
from lstmkit.models.seq2seq import ATTENTIONS
from lstmkit.pipelines.configs import BLEU_TOKENIZERS, SELECTIONS, DecodingConfig, TranslationConfig
from lstmkit.training.progress import seconds_text
from lstmkit.training.distributed import announce


def translate_train_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.translate import CURVES_FILE, TRANSLATION_MODEL, train_translation

    config = config_from(arguments, TranslationConfig, tie_embeddings=not arguments.untied_embeddings,
                         validation_bleu=not arguments.no_validation_bleu)
    out = Path(arguments.out)
    check_runtime(config.device, config.precision, config.engine, config.cell)
    check_run_folder(out, arguments.resume, TRANSLATION_MODEL.name, (CURVES_FILE,))
    if arguments.resume:  # before the command says a word (the pipeline checks again, for Python callers)
        check_resumed_settings(out, config)
    verb = "resuming" if arguments.resume else "training"
    announce(f"{verb} a {config.num_layers}x{config.hidden_size} {config.cell} encoder-decoder ({config.attention} "
             f"attention) on {arguments.source} -> {arguments.target}; checkpoints in {out}/")
    run = train_translation(arguments.source, arguments.target, arguments.valid_source, arguments.valid_target, out,
                            config, arguments.resume)
    bleu = "" if run.best_val_bleu is None else f", validation BLEU {run.best_val_bleu:.2f} (greedy)"
    print(f"best validation: {run.best_val_loss:.4f} nats/token{bleu}")
    print(f"{run.steps:,} step{'s' * (run.steps != 1)} in {seconds_text(run.seconds)} s of training, "
          f"{run.tokens_per_second:,.0f} target tokens/s "
          f"({describe_runtime(run.device, run.precision, run.processes)})")
    print(f"wrote {out}/best, {out}/last, {out}/metrics.csv, {out}/results.json and {out}/curves.png")


def decoding(arguments: argparse.Namespace) -> dict:
    """The decoding settings, checked before any work is done."""
    return vars(config_from(arguments, DecodingConfig))


def translate_run_command(arguments: argparse.Namespace) -> None:
    from lstmkit import plots
    from lstmkit.pipelines.translate import load_translator, read_sentences
    from lstmkit.files import gunzipped
    from lstmkit.text.parallel import text_lines

    settings = decoding(arguments)
    check_not_read({"--show-attention": arguments.show_attention},
                   {"the file to translate": None if arguments.file == "-" else arguments.file,
                    **run_files(arguments.directory)})
    if arguments.sentence is not None and arguments.show_attention is None:
        raise ValueError("--sentence chooses the sentence whose attention --show-attention draws; give --show-attention")
    translator = load_translator(arguments.directory, arguments.device)
    if arguments.file == "-":
        sentences = text_lines(gunzipped(sys.stdin.buffer.read(), "stdin"), "stdin", blank_lines=True)
    else:
        sentences = read_sentences(arguments.file)
    shown = 1 if arguments.sentence is None else arguments.sentence
    if arguments.show_attention is not None and shown > len(sentences):
        raise ValueError(f"--sentence {shown}: there are {len(sentences)} sentences")
    if arguments.show_attention is not None and not sentences[shown - 1]:
        raise ValueError(f"--sentence {shown} is an empty line: it has no attention to draw")
    for translation in translator.translate(sentences, **settings, progress=True):
        print(translation, flush=False)
    if arguments.show_attention is not None:
        alignment = translator.align(sentences[shown - 1], **settings)
        plots.attention_matrix(alignment.source, alignment.target, alignment.weights.numpy(), arguments.show_attention)
        print(f"wrote the attention of sentence {shown} to {arguments.show_attention}", file=sys.stderr)


def translate_eval_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.translate import load_translator
    from lstmkit.text.parallel import read_parallel

    check_not_read({"--json": arguments.json, "--out": arguments.out},
                   {"the source file": arguments.source, "the reference file": arguments.reference,
                    **run_files(arguments.directory)})
    settings = decoding(arguments)
    test = read_parallel(arguments.source, arguments.reference, ("source", "reference"), "reference")
    translator = load_translator(arguments.directory, arguments.device)
    scores = translator.score(test.sources, test.targets, **settings, tokenize=arguments.tokenize,
                              lowercase=arguments.lowercase, progress=True)
    report = report_stream(arguments.json, arguments.out)
    print(f"BLEU {scores.bleu:.2f}  chrF {scores.chrf:.2f}  ({scores.sentences:,} sentences, beam {scores.beam}, "
          f"{scores.sentences / max(scores.seconds, 1e-9):.1f} sentences/s)", file=report)
    print(f"BLEU signature: {scores.signature}", file=report)
    print(f"chrF signature: {scores.chrf_signature}", file=report)
    if arguments.json is not None:
        write_json(arguments.json, scores.to_dict())
        print(f"wrote {arguments.json}", file=report)
    if arguments.out is not None:  # the hypotheses scored, for sacrebleu or a look by eye
        with atomic_path(arguments.out) as temporary:
            temporary.write_text("".join(f"{translation}\n" for translation in scores.translations), encoding="utf-8")
        print(f"wrote {arguments.out}", file=report)


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="a run folder (its best checkpoint) or a checkpoint folder")
    add_setting(parser, DecodingConfig, "beam", "beam size; 1 decodes greedily", type=positive_int)
    add_setting(parser, DecodingConfig, "max_length",
                "at most this many subwords per translation, and at most twice its source's length (its end token "
                "included) plus 10",
                type=positive_int)
    add_setting(parser, DecodingConfig, "length_penalty",
                "beam search's: an ended hypothesis scores log-probability / length^this: 1 is the per-token mean, "
                "0 the sum",
                type=float)
    parser.add_argument("--device", type=device_name, default="cpu", help="where to run the model (default cpu)")


def add_translate_commands(commands) -> None:
    translate = commands.add_parser("translate", help="machine translation: train, run, eval").add_subparsers(
        dest="translate", required=True)
    train = translate.add_parser("train", help="train an encoder-decoder with attention on parallel text")
    for name, text in (("source", "training sentences"), ("target", "their translations, line for line"),
                       ("valid-source", "validation sentences"), ("valid-target", "their translations")):
        train.add_argument(f"--{name}", required=True, type=sentence_file, help=f"{text}: UTF-8, one per line, plain or gzip")
    add_setting(train, TranslationConfig, "cell", "recurrent cell of the encoder and the decoder",
                choices=list(CELL_NAMES))
    add_setting(train, TranslationConfig, "num_layers", "recurrent layers", type=positive_int)
    add_setting(train, TranslationConfig, "hidden_size", "hidden units per layer and direction", type=positive_int)
    add_setting(train, TranslationConfig, "embedding_size", "embedding size (default: --hidden-size)",
                type=positive_int)
    add_setting(train, TranslationConfig, "attention", "attention score", choices=list(ATTENTIONS))
    add_setting(train, TranslationConfig, "dropout", "dropout probability", type=float)
    add_setting(train, TranslationConfig, "label_smoothing", "label smoothing of the training loss", type=float)
    train.add_argument("--untied-embeddings", action="store_true",
                       help="give the output layer its own weights rather than the target embedding's")
    add_setting(train, TranslationConfig, "source_vocabulary_size", "source subword pieces", type=positive_int)
    add_setting(train, TranslationConfig, "target_vocabulary_size", "target subword pieces", type=positive_int)
    add_setting(train, TranslationConfig, "batch_size", "sentence pairs per step (shared among torchrun's processes)",
                type=positive_int)
    add_setting(train, TranslationConfig, "max_train_length", "leave out longer training pairs (subwords)",
                type=positive_int)
    train.add_argument("--no-validation-bleu", action="store_true",
                       help="score the validation loss alone at each evaluation (no greedy decoding)")
    add_setting(train, TranslationConfig, "select", "what marks the best checkpoint: validation loss or BLEU",
                choices=list(SELECTIONS))
    add_setting(train, TranslationConfig, "engine", "recurrent engine of the encoder", choices=ENGINE_CHOICES)
    add_regulariser_arguments(train, TranslationConfig)  # the encoder's (the decoder's cells take none)
    add_training_arguments(train, TranslationConfig)
    train.add_argument("--out", required=True, type=output_folder, help="run folder")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.set_defaults(run=translate_train_command, extra="translate")

    run = translate.add_parser("run", help="translate sentences, one per line, to stdout")
    add_decoding_arguments(run)
    run.add_argument("file", nargs="?", default="-", help="sentences to translate (plain or gzip); - or none: stdin")
    run.add_argument("--show-attention", metavar="PNG", type=output_figure,
                     help="draw the attention matrix of one sentence (.png, .pdf or .svg)")
    run.add_argument("--sentence", type=positive_int,
                     help="with --show-attention: which sentence, counted from 1 (default 1)")
    run.set_defaults(run=translate_run_command, extra="translate")

    evaluate = translate.add_parser("eval", help="sacreBLEU corpus BLEU and chrF of the translations of a test set")
    add_decoding_arguments(evaluate)
    evaluate.add_argument("--source", required=True, type=sentence_file, help="test sentences (plain or gzip)")
    evaluate.add_argument("--reference", required=True, type=sentence_file, help="their reference translations, line for line")
    evaluate.add_argument("--json", type=output_file,
                          help="also write the scores (bleu, chrf, sentences, beam, signature) here (-: stdout)")
    evaluate.add_argument("--tokenize", choices=BLEU_TOKENIZERS, default=BLEU_TOKENIZERS[0],
                          help="sacreBLEU's tokeniser for BLEU (default 13a, sacreBLEU's own; zh for Chinese, char, "
                               "intl, none)")
    evaluate.add_argument("--lowercase", action="store_true", help="score BLEU and chrF case-insensitively")
    evaluate.add_argument("--out", type=output_file,
                          help="also write the translations scored here, one per line, as the source's lines "
                               "(-: stdout)")
    evaluate.set_defaults(run=translate_eval_command, extra="translate")
