"""`lstmkit lm train / sample / eval`: language models."""

from __future__ import annotations

import argparse
from pathlib import Path

from lstmkit.cells import CELLS
from lstmkit.cli.arguments import positive_float, positive_int
from lstmkit.engines import ENGINE_CHOICES


def lm_train_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.lm import LMTrainingConfig, train_language_model

    budget = {"steps": arguments.steps, "epochs": arguments.epochs, "time_budget": arguments.time_budget}
    if all(value is None for value in budget.values()):
        budget["epochs"] = 10.0
    config = LMTrainingConfig(
        level=arguments.level, min_frequency=arguments.min_frequency, cell=arguments.cell, layers=arguments.layers,
        hidden=arguments.hidden, embedding=arguments.embedding, dropout=arguments.dropout,
        tie_weights=arguments.tie_weights, seq_len=arguments.seq_len, batch=arguments.batch, lr=arguments.lr,
        weight_decay=arguments.weight_decay, clip=arguments.clip, warmup=arguments.warmup,
        eval_every=arguments.eval_every, seed=arguments.seed, engine=arguments.engine, **budget,
    )
    out = Path(arguments.out or Path("runs") / f"lm-{Path(arguments.text).stem}")
    verb = "resuming" if arguments.resume else "training"
    print(f"{verb} a {config.layers}x{config.hidden} {config.cell} {config.level}-level model on {arguments.text}; "
          f"checkpoints in {out}/", flush=True)
    run = train_language_model(arguments.text, out, config, arguments.valid, arguments.resume)
    print(f"best validation: {run.best_val_loss:.4f} nats/token, perplexity {run.best_val_perplexity:.2f}, "
          f"{run.best_val_bpc:.3f} bits/character")
    print(f"{run.steps:,} steps in {run.seconds:.0f} s of training, {run.tokens_per_second:,.0f} tokens/s")
    print(f"wrote {out}/best, {out}/last, {out}/metrics.csv and {out}/results.json")


def lm_sample_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.lm import load_language_model

    model = load_language_model(arguments.directory)
    print(model.sample(arguments.prime, arguments.length, arguments.temperature, arguments.top_k, arguments.seed))


def lm_eval_command(arguments: argparse.Namespace) -> None:
    from lstmkit.pipelines.lm import load_language_model
    from lstmkit.text import read_text

    scores = load_language_model(arguments.directory).evaluate(read_text(arguments.text))
    print(f"loss {scores.loss:.4f} nats/token, perplexity {scores.perplexity:.2f}, "
          f"{scores.bits_per_character:.3f} bits/character over {scores.tokens:,} tokens")


def add_lm_commands(commands) -> None:
    lm = commands.add_parser("lm", help="language models: train, sample, eval").add_subparsers(dest="lm", required=True)
    train = lm.add_parser("train", help="train a character- or word-level language model on a text file")
    train.add_argument("text", help="a UTF-8 text file; its last 10%% validates unless --valid is given")
    train.add_argument("--valid", help="a separate validation text file")
    train.add_argument("--level", choices=["char", "word"], default="char", help="tokens (default char)")
    train.add_argument("--min-frequency", type=positive_int, default=1,
                       help="word level: rarer words become <unk> (default 1)")
    train.add_argument("--cell", choices=list(CELLS), default="lstm", help="recurrent cell (default lstm)")
    train.add_argument("--layers", type=positive_int, default=2, help="recurrent layers (default 2)")
    train.add_argument("--hidden", type=positive_int, default=512, help="hidden units per layer (default 512)")
    train.add_argument("--embedding", type=positive_int, help="embedding size (default: --hidden)")
    train.add_argument("--tie-weights", action="store_true", help="share the embedding with the decoder")
    train.add_argument("--seq-len", type=positive_int, default=100, help="steps of backpropagation (default 100)")
    train.add_argument("--batch", type=positive_int, default=64, help="parallel streams (default 64)")
    train.add_argument("--dropout", type=float, default=0.2, help="dropout probability (default 0.2)")
    train.add_argument("--lr", type=positive_float, default=2e-3, help="peak AdamW learning rate (default 2e-3)")
    train.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    train.add_argument("--clip", type=positive_float, default=5.0, help="gradient-norm clip (default 5.0)")
    train.add_argument("--warmup", type=int, default=100, help="steps of linear warm-up (default 100)")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=positive_int, help="training steps")
    budget.add_argument("--epochs", type=positive_float, help="passes over the training text (default 10)")
    budget.add_argument("--time-budget", type=positive_float, help="seconds of training")
    train.add_argument("--eval-every", type=positive_int, default=200, help="steps between validations (default 200)")
    train.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    train.add_argument("--engine", choices=ENGINE_CHOICES, default="auto")
    train.add_argument("--out", help="run folder (default runs/lm-TEXTNAME)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.set_defaults(run=lm_train_command)

    sample = lm.add_parser("sample", help="print text sampled from a trained model")
    sample.add_argument("directory", help="a run folder (its best checkpoint) or a checkpoint folder")
    sample.add_argument("--prime", default="", help="text to start from")
    sample.add_argument("--length", type=int, default=500, help="tokens to sample (default 500)")
    sample.add_argument("--temperature", type=positive_float, default=1.0, help="below 1: more likely tokens")
    sample.add_argument("--top-k", type=positive_int, help="sample among the k likeliest tokens only")
    sample.add_argument("--seed", type=int, help="seed, for a reproducible sample")
    sample.set_defaults(run=lm_sample_command)

    evaluate = lm.add_parser("eval", help="loss, perplexity and bits per character of a text under a model")
    evaluate.add_argument("directory", help="a run folder (its best checkpoint) or a checkpoint folder")
    evaluate.add_argument("text", help="a UTF-8 text file")
    evaluate.set_defaults(run=lm_eval_command)
