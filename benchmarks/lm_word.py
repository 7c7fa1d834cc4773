"""Word-level language modelling on the files pytorch/examples `word_language_model` reads,
so that the two run on the same data. Their budgets are not equal wall time: lstmkit's
--time-budget counts its training steps alone (its evaluations took its ten-minute runs to
~680 s), `timeout` the example's whole run, evaluations included.

    python benchmarks/lm_word.py split ../shared/data/tinyshakespeare.txt runs/word-shakespeare/data
    python benchmarks/lm_word.py run runs/word-shakespeare/data --time-budget 600 [lm train flags ...]
    OMP_NUM_THREADS=1 timeout -s INT 600 python main.py --data runs/word-shakespeare/data --epochs 100
                                                # in pytorch/examples/word_language_model, as BENCHMARKS.md ran it

`split` writes train.txt, valid.txt and test.txt, the example's layout: the text's lines in
order, 80 / 10 / 10 %, each file ending with a line break, and every word of the validation
and test lines that the training lines never use replaced by <unk>. lstmkit maps unseen words
to <unk> itself; the example builds its dictionary from all three files, so without this it
would be scored on words it could never have learned. Both then read a line as its words plus
one end-of-line token, so they predict the same tokens.

`run` trains `lstmkit lm train train.txt --valid valid.txt --level word` with the flags given,
scores test.txt with the best checkpoint, and prints one line: steps, tokens/s, validation and
test perplexity.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lstmkit.cli import main as lstmkit_main
from lstmkit.pipelines.lm import load_language_model
from lstmkit.text.vocabulary import UNKNOWN

# Train, validation and test shares of the lines: the common 80/10/10.
FRACTIONS = (0.8, 0.1, 0.1)
FILES = ("train.txt", "valid.txt", "test.txt")


def split_lines(text: str, fractions: tuple[float, float, float] = FRACTIONS) -> tuple[str, str, str]:
    """The text's lines in three consecutive parts; words of the second and third that the
    first never uses become UNKNOWN. Each part ends with a line break."""
    lines = text.rstrip("\n").split("\n")
    first = round(len(lines) * fractions[0])
    second = first + round(len(lines) * fractions[1])
    if not 0 < first < second < len(lines):
        raise ValueError(f"the text has {len(lines)} lines; the split {fractions} needs at least one in each part")
    train, valid, test = lines[:first], lines[first:second], lines[second:]
    known = {word for line in train for word in line.split()}

    def unknown_replaced(part: list[str]) -> list[str]:
        return [" ".join(word if word in known else UNKNOWN for word in line.split()) for line in part]

    return tuple("\n".join(part) + "\n" for part in (train, unknown_replaced(valid), unknown_replaced(test)))


def write_split(text_path: str, out: str) -> None:
    parts = split_lines(Path(text_path).read_text(encoding="utf-8"))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in zip(FILES, parts):
        (folder / name).write_text(part, encoding="utf-8")
        lines = part.count("\n")
        print(f"{folder / name}: {lines:,} lines, {len(part.split()):,} words")


def train_and_test(data: str, out: str | None, flags: list[str]) -> None:
    folder = Path(data)
    run = Path(out) if out else folder.parent / "lstmkit"
    train, valid, test = (str(folder / name) for name in FILES)
    status = lstmkit_main(["lm", "train", train, "--valid", valid, "--level", "word", "--out", str(run), *flags])
    if status:
        raise SystemExit(status)
    results = json.loads((run / "results.json").read_text())
    scores = load_language_model(run).evaluate((folder / "test.txt").read_text(encoding="utf-8"))
    print(f"lstmkit {' '.join(flags)}: {results['steps']:,} steps, {results['tokens_per_second']:,.0f} tokens/s, "
          f"validation perplexity {results['best_val_ppl']:.2f}, test perplexity {scores.perplexity:.2f} "
          f"over {scores.tokens:,} tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    split = commands.add_parser("split", help="write train.txt, valid.txt and test.txt")
    split.add_argument("text")
    split.add_argument("out", help="the folder for the three files")
    run = commands.add_parser("run", help="train lstmkit on a split and score its test.txt",
                              epilog="Every other flag goes to `lstmkit lm train` (--time-budget 600, --device cpu, "
                                     "--recipe awd, ...): see `lstmkit lm train --help`.")
    run.add_argument("data", help="a folder written by split")
    run.add_argument("--out", help="the run folder (default: lstmkit/ beside the data folder)")
    arguments, flags = parser.parse_known_args()
    if arguments.command == "split":
        if flags:
            parser.error(f"split takes no lm train flags, got {' '.join(flags)}")
        if not Path(arguments.text).is_file():
            parser.error(f"argument text: {arguments.text} is not a file")
        write_split(arguments.text, arguments.out)
    else:
        train_and_test(arguments.data, arguments.out, flags)


if __name__ == "__main__":
    main()
