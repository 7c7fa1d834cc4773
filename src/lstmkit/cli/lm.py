"""`lstmkit lm train / sample / eval`: language models."""

from __future__ import annotations

import argparse
from pathlib import Path

from lstmkit.cells import CELL_NAMES
from lstmkit.cli.arguments import (
    add_regulariser_arguments, add_setting, add_training_arguments, config_from, device_name, field_default,
    non_negative_float, non_negative_int, output_folder, positive_float, positive_int, positive_ints, probability,
    probability_mass, text_file, typed_text,
)
from lstmkit.engines import ENGINE_CHOICES
from lstmkit.training import check_run_folder, describe_runtime
from lstmkit.training.device import check_runtime
from lstmkit.pipelines.lm import RECIPES, LMTrainingConfig
from lstmkit.pipelines.lm_evaluation import CachePointer, DynamicEvaluation
from lstmkit.training.progress import seconds_text
from lstmkit.training.distributed import announce


# The settings a --recipe sets, which a flag given beside it overrides even at its default:
# left unset by argparse (NOT_GIVEN) where no flag gives them.
RECIPE_SETTINGS = sorted({name for recipe in RECIPES.values() for name in recipe})
NOT_GIVEN = object()


def text_name(path: str) -> str:
    """A text file's name without its suffix, and without .gz first (english.txt.gz: english)."""
    name = Path(path)
    return Path(name.stem).stem if name.suffix.lower() == ".gz" else name.stem


def training_config(arguments: argparse.Namespace) -> LMTrainingConfig:
    """The config of `lm train`'s flags: a --recipe's settings where no flag gives them, a flag
    given winning even at its default (`recipe_keeps`)."""
    given = [name for name in RECIPE_SETTINGS if getattr(arguments, name) is not NOT_GIVEN]
    unset = {name: field_default(LMTrainingConfig, name) for name in RECIPE_SETTINGS if name not in given}
    return config_from(arguments, LMTrainingConfig, **unset,
                       recipe_keeps=tuple(given) if arguments.recipe is not None else ())


def lm_train_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.lm import LANGUAGE_MODEL, sized_like, train_language_model

    out = Path(arguments.out or Path("runs") / f"lm-{text_name(arguments.text)}")
    config = training_config(arguments)
    check_run_folder(out, arguments.resume, LANGUAGE_MODEL.name)
    if arguments.resume:  # the run's size, to say what is resumed
        config = sized_like(config, out)
    check_runtime(config.device, config.precision, config.engine, config.cell)
    verb = "resuming" if arguments.resume else "training"
    announce(f"{verb} a {config.num_layers}x{config.hidden_size} {config.cell} {config.level}-level model on "
             f"{arguments.text}; checkpoints in {out}/")
    run = train_language_model(arguments.text, out, config, arguments.valid, arguments.resume)
    print(f"best validation: {run.best_val_loss:.4f} nats/token, perplexity {run.best_val_ppl:.2f}, "
          f"{run.best_val_bpc:.3f} bits/character")
    print(f"{run.steps:,} step{'s' * (run.steps != 1)} in {seconds_text(run.seconds)} s of training, "
          f"{run.tokens_per_second:,.0f} tokens/s "
          f"({describe_runtime(run.device, run.precision, run.processes)})")
    print(f"wrote {out}/best, {out}/last, {out}/metrics.csv and {out}/results.json")


def lm_sample_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.lm import load_language_model

    model = load_language_model(arguments.directory, device=arguments.device)
    pieces = model.sample_pieces(arguments.prime, arguments.length, arguments.temperature, arguments.top_k,
                                 arguments.seed, arguments.top_p)
    try:
        for piece in pieces:
            print(piece, end="", flush=True)  # as drawn: a long sample shows, and keeps, what it has
    finally:  # interrupted too: "lstmkit: interrupted" then starts on a line of its own
        print(flush=True)


def lm_eval_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.lm import load_language_model
    from lstmkit.text import read_text

    for switch, config_class, settings in (
            ("cache", CachePointer, {"window": "cache_window", "theta": "cache_theta", "mixture": "cache_lambda"}),
            ("dynamic", DynamicEvaluation, {"segment": "dynamic_segment", "lr": "dynamic_lr", "decay": "dynamic_decay"})):
        given = [f"--{dest.replace('_', '-')}" for field, dest in settings.items()
                 if getattr(arguments, dest) != field_default(config_class, field)]
        if given and not getattr(arguments, switch):
            raise ValueError(f"{', '.join(given)} set{'s' if len(given) == 1 else ''} how --{switch} scores; "
                             f"add --{switch}")
    model, text = load_language_model(arguments.directory, device=arguments.device), read_text(arguments.text)
    ways = {"": {}}
    if arguments.cache:
        ways["with the cache pointer: "] = {"cache": CachePointer(arguments.cache_window, arguments.cache_theta,
                                                                   arguments.cache_lambda)}
    if arguments.dynamic:
        ways["with dynamic evaluation: "] = {"dynamic": DynamicEvaluation(arguments.dynamic_segment,
                                                                           arguments.dynamic_lr, arguments.dynamic_decay)}
    for label, way in ways.items():
        scores = model.evaluate(text, **way, progress=True)
        print(f"{label}loss {scores.loss:.4f} nats/token, perplexity {scores.perplexity:.2f}, "
              f"{scores.bits_per_character:.3f} bits/character over {scores.tokens:,} tokens scored (every one after "
              "the text's first)")


def add_lm_commands(commands) -> None:
    lm = commands.add_parser("lm", help="language models: train, sample, eval").add_subparsers(dest="lm", required=True)
    train = lm.add_parser("train", help="train a character- or word-level language model on a text file")
    train.add_argument("text", type=text_file, help="a UTF-8 text file; its last part (--validation-fraction) "
                       "validates unless --valid is given")
    train.add_argument("--valid", type=text_file, help="a separate validation text file")
    add_setting(train, LMTrainingConfig, "validation_fraction", "the share of the text's end that validates, "
                "without --valid", type=float)
    add_setting(train, LMTrainingConfig, "level", "tokens", choices=["char", "word"])
    add_setting(train, LMTrainingConfig, "min_frequency", "word level: rarer words become <unk>", type=positive_int)
    add_setting(train, LMTrainingConfig, "cell", "recurrent cell", choices=list(CELL_NAMES))
    add_setting(train, LMTrainingConfig, "num_layers", "recurrent layers", type=positive_int)
    add_setting(train, LMTrainingConfig, "hidden_size", "hidden units per layer", type=positive_int)
    add_setting(train, LMTrainingConfig, "embedding_size", "embedding size (default: --hidden-size)", type=positive_int)
    add_setting(train, LMTrainingConfig, "tie_weights", "share the embedding with the decoder",
                action=argparse.BooleanOptionalAction)
    add_setting(train, LMTrainingConfig, "init_range", "embedding and decoder from U(-r, r); 0: torch's "
                "initialisation", type=float)
    add_setting(train, LMTrainingConfig, "seq_len", "steps of backpropagation", type=positive_int)
    add_setting(train, LMTrainingConfig, "batch_size", "parallel streams (shared among torchrun's processes)",
                type=positive_int)
    add_setting(train, LMTrainingConfig, "dropout", "dropout probability", type=float)
    add_setting(train, LMTrainingConfig, "adaptive_softmax_cutoffs", "an adaptive softmax with these cluster "
                "boundaries, comma-separated (word level: e.g. 2000,10000)", type=positive_ints)
    add_setting(train, LMTrainingConfig, "variable_length", "windows of random length around --seq-len, the "
                "rate scaled by length / seq-len (AWD-LSTM)", action=argparse.BooleanOptionalAction)
    add_setting(train, LMTrainingConfig, "locked_dropout", "--dropout around the layers with one mask per "
                "sequence for every step, and none between them (there --input-dropout, AWD-LSTM's dropouth)",
                action=argparse.BooleanOptionalAction)
    add_setting(train, LMTrainingConfig, "embedding_dropout", "whole words dropped from the embedding",
                type=probability)
    add_setting(train, LMTrainingConfig, "activation_regularisation", "AR: weight of the outputs' mean square",
                type=float)
    add_setting(train, LMTrainingConfig, "temporal_activation_regularisation",
                "TAR: weight of the mean square of h_t - h_{t-1}", type=float)
    add_setting(train, LMTrainingConfig, "recipe", "a named set of settings, for those no flag gives",
                choices=list(RECIPES))
    add_setting(train, LMTrainingConfig, "engine", "recurrent engine", choices=ENGINE_CHOICES)
    add_regulariser_arguments(train, LMTrainingConfig)
    add_training_arguments(train, LMTrainingConfig)
    train.add_argument("--out", type=output_folder, help="run folder (default runs/lm-TEXTNAME)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.set_defaults(run=lm_train_command, extra="lm", **dict.fromkeys(RECIPE_SETTINGS, NOT_GIVEN))

    sample = lm.add_parser("sample", help="print text sampled from a trained model")
    sample.add_argument("directory", help="a run folder (its best checkpoint) or a checkpoint folder")
    sample.add_argument("--prime", default="", type=typed_text, help="text to start from")
    sample.add_argument("--length", type=non_negative_int, default=500, help="tokens to sample (default 500)")
    sample.add_argument("--temperature", type=non_negative_float, default=1.0,
                        help="below 1: likelier tokens; 0: always the likeliest (default 1)")
    sample.add_argument("--top-k", type=positive_int,
                        help="sample among the k likeliest tokens only (default: all; k above the vocabulary: all)")
    sample.add_argument("--top-p", type=probability_mass,
                        help="sample among the likeliest tokens holding this probability mass only (nucleus "
                             "sampling; default: all)")
    sample.add_argument("--seed", type=int, help="seed, for a reproducible sample")
    sample.add_argument("--device", type=device_name, default="cpu", help="where to run the model (default cpu)")
    sample.set_defaults(run=lm_sample_command)

    evaluate = lm.add_parser("eval", help="loss, perplexity and bits per character of a text under a model")
    evaluate.add_argument("directory", help="a run folder (its best checkpoint) or a checkpoint folder")
    evaluate.add_argument("text", type=text_file, help="a UTF-8 text file")
    evaluate.add_argument("--device", type=device_name, default="cpu", help="where to run the model (default cpu)")
    evaluate.add_argument("--cache", action="store_true",
                          help="also score with the continuous cache pointer (Grave et al. 2017)")
    add_setting(evaluate, CachePointer, "window", "the cache's span in tokens", dest="cache_window", type=positive_int,
                flag="--cache-window")
    add_setting(evaluate, CachePointer, "theta", "the cache's sharpness θ", dest="cache_theta", type=float,
                flag="--cache-theta")
    add_setting(evaluate, CachePointer, "mixture", "the cache's weight λ", dest="cache_lambda", type=float,
                flag="--cache-lambda")
    evaluate.add_argument("--dynamic", action="store_true",
                          help="also score with dynamic evaluation (Krause et al. 2018)")
    add_setting(evaluate, DynamicEvaluation, "segment", "tokens scored between updates", dest="dynamic_segment",
                type=positive_int, flag="--dynamic-segment")
    add_setting(evaluate, DynamicEvaluation, "lr", "the SGD rate of the updates", dest="dynamic_lr",
                type=positive_float, flag="--dynamic-lr")
    add_setting(evaluate, DynamicEvaluation, "decay", "the pull back towards the trained weights",
                dest="dynamic_decay", type=float, flag="--dynamic-decay")
    evaluate.set_defaults(run=lm_eval_command)
