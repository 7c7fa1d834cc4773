"""The `lstmkit` command: argument parsing only; the work lives in the library."""

from __future__ import annotations

import argparse
import codecs
import contextlib
import io
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator

from lstmkit import __version__
from lstmkit.checkpoint import CheckpointWriteError
from lstmkit.cli.forecast import add_forecast_commands
from lstmkit.cli.lm import add_lm_commands
from lstmkit.cli.signals import Terminated, ignore_further_signals, on_interrupts, stopping_on_sigterm
from lstmkit.cli.speech import add_speech_commands
from lstmkit.cli.tasks import add_task_commands
from lstmkit.cli.translate import add_translate_commands
from lstmkit.extras import MissingExtra, require_extra
from lstmkit.runtime import tune_cpu_for_training
from lstmkit.training import Processes, TrainingDiverged
from lstmkit.training.progress import bars_closed_on_failure


# How long a process other than rank 0 waits before it exits on an error: rank 0 meets the same
# error and says it, unless torchrun, seeing the other exit, stops it first. Longer than the 5 s
# at which torchrun polled its workers before torch 2.4 (0.1 s since), so that rank 0's exit ends
# the run before the wait does.
PEER_GRACE_SECONDS = 10.0


class Parser(argparse.ArgumentParser):
    """argparse's parser, taking an option only by its full name: with abbreviations, `--lr 0.1`
    given to a command that has no --lr but a --lr-schedule sets the schedule, and an option added
    later (`--hidden-size` beside `--hidden`) silently changes what an old command line meant.
    Its subcommands' parsers are of this class too."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="lstmkit", description="The LSTM family for PyTorch.")
    parser.add_argument("--version", action="version", version=f"lstmkit {__version__}")
    parser.set_defaults(extra=None)  # a command that needs a pip extra sets its name
    parser.set_defaults(trains=False)  # a command that trains sets it (add_training_arguments), or a function of
    # its arguments that says whether it does
    commands = parser.add_subparsers(dest="command", required=True)
    add_task_commands(commands)
    add_lm_commands(commands)
    add_forecast_commands(commands)
    add_speech_commands(commands)
    add_translate_commands(commands)
    for command in subcommands(parser):
        # its choices, not its dest: "the following arguments are required: {train,sample,eval}", not "lm"
        command.metavar = "{" + ",".join(command.choices) + "}"
    return parser


def subcommands(parser: argparse.ArgumentParser) -> Iterator[argparse._SubParsersAction]:
    """The subcommand actions of `parser`, at every level."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield action
            for subparser in action.choices.values():
                yield from subcommands(subparser)


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`parser.parse_args`, with an unknown argument reported by the command it was given to
    (`lstmkit lm train: error: unrecognized arguments: --frobnicate`, with that command's usage),
    where argparse reports it with the top level's."""
    argv = sys.argv[1:] if argv is None else argv
    arguments, unknown = parser.parse_known_args(argv)
    if unknown:
        levels, named_at = [parser], []  # the parsers of the subcommands named, and where each is named
        for position, word in enumerate(argv):
            command = next(subcommands(levels[-1]), None)
            if command is not None and word in command.choices:
                levels.append(command.choices[word])
                named_at.append(position)
        first = next((position for position, word in enumerate(argv) if word == unknown[0]
                      and position not in named_at), len(argv))
        levels[sum(1 for position in named_at if position < first)].error(
            f"unrecognized arguments: {' '.join(unknown)}")
    return arguments


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line addressed to the user, not a source location."""
    print(f"lstmkit: warning: {message}", file=sys.stderr if file is None else file)


def write_stdout_in_utf8() -> None:
    """What a command prints (samples, translations, tables) into a file or pipe is UTF-8, as
    every file it writes is, whatever the locale (a Latin-1 one, Windows' cp1252), as sacrebleu's
    is: printing Chinese text failed there once the work was done, or wrote bytes no UTF-8
    reader reads. A terminal keeps its encoding, what it cannot show escaped (\\u5929); an
    encoding asked for (PYTHONIOENCODING) is kept; bytes of a path the locale could not decode
    are written back as they came (surrogateescape, as Python's stdout does under LC_ALL=C)."""
    stream = sys.stdout
    if not hasattr(stream, "reconfigure") or os.environ.get("PYTHONIOENCODING") \
            or codecs.lookup(stream.encoding or "ascii").name == "utf-8":
        return
    if stream.isatty():
        stream.reconfigure(errors=TERMINAL_ERRORS)
    else:
        stream.reconfigure(encoding="utf-8", errors="surrogateescape")


def terminal_errors(error: UnicodeEncodeError) -> tuple[str | bytes, int]:
    """What a terminal's encoding cannot write: a path's undecoded bytes as they came
    (surrogateescape), anything else escaped (backslashreplace)."""
    try:
        return codecs.lookup_error("surrogateescape")(error)
    except UnicodeEncodeError:
        return codecs.backslashreplace_errors(error)


TERMINAL_ERRORS = "lstmkit.terminal"
codecs.register_error(TERMINAL_ERRORS, terminal_errors)


def main(argv: list[str] | None = None) -> int:
    with stopping_on_sigterm():
        return run_command(argv)


def run_command(argv: list[str] | None) -> int:
    parser = build_parser()
    warnings.showwarning = show_warning
    try:
        processes = Processes.from_environment()
    except ValueError as error:  # torchrun's variables, set by hand
        parser.exit(2, f"lstmkit: error: {error}\n")
    main_process = processes.main
    write_stdout_in_utf8()
    if not main_process:  # under torchrun, rank 0 alone speaks (and warns), from the command line on
        sys.stdout = open(os.devnull, "w", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115 (for good)
        warnings.simplefilter("ignore")
    said = io.StringIO()
    try:
        with contextlib.nullcontext() if main_process else contextlib.redirect_stderr(said):
            arguments = parse_arguments(parser, argv)
    except SystemExit as exit_:  # a bad argument, which rank 0 meets too: it must say so before torchrun stops it
        if not main_process and exit_.code not in (0, None):
            wait_for_rank_0(exit_.code)
            error = said.getvalue().strip().splitlines()[-1:]  # rank 0 did not end the run: the error is this one's
            sys.stderr.write("".join(f"lstmkit: process {processes.rank} of {processes.world_size}: {line}\n"
                                     for line in error))
        raise
    trains = arguments.trains(arguments) if callable(arguments.trains) else arguments.trains
    if not main_process and not trains:  # under torchrun, a command that trains nothing runs in rank 0
        return 0  # alone: every process wrote the same files (speech fsdd's split), and all but one then failed
    tune_cpu_for_training()  # this process is ours: flush subnormals, keep freed memory

    def stop(status: int, message: str) -> None:
        """Exit with `status`, saying `message` on rank 0. Another process meets the same bad
        option, but were it to exit first, torchrun would stop rank 0 before it said why: it
        waits PEER_GRACE_SECONDS, then (where rank 0 has not ended the run by then, its error
        being this process's alone) says it, naming itself."""
        if main_process or not message:
            parser.exit(status, message)
        wait_for_rank_0(status)
        parser.exit(status, f"lstmkit: process {processes.rank} of {processes.world_size}: "
                            f"{message.removeprefix('lstmkit: ')}")

    try:
        if arguments.extra is not None:
            require_extra(arguments.extra, f"lstmkit {arguments.command}")
        with bars_closed_on_failure():  # "lstmkit: interrupted" on a line of its own
            arguments.run(arguments)
        if sys.stdout is not None:  # None where the shell closed it (>&-): print wrote nothing
            sys.stdout.flush()  # here, where a closed pipe is caught below, not at the interpreter's exit
    except MissingExtra as error:  # one line that names the pip command
        stop(1, f"{error}\n")
    except (TrainingDiverged, CheckpointWriteError) as error:  # the run stopped; what it wrote before is kept
        stop(1, f"lstmkit: error: {error}\n")
    except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM: one line, not the traceback of wherever the run was
        ignore_further_signals()
        resumable = ("; a checkpoint written before is kept, and the same command with --resume continues from it "
                     "(before the first one, run the command again without --resume)")
        terminated = isinstance(interrupt, Terminated) or isinstance(interrupt.__context__, Terminated)  # a task's
        how = " (SIGTERM)" if terminated else ""
        message = f"lstmkit: interrupted{how}{resumable if hasattr(arguments, 'resume') else ''}\n"
        stop(143 if how else 130, message if main_process else "")  # every process was interrupted
    except BrokenPipeError:  # the reader of stdout left (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush cannot fail again
        return 141  # 128 + SIGPIPE, the status a shell gives such a tool
    except (ValueError, TypeError, OSError) as error:  # checks name what was expected and received; files, the path
        stop(2, f"lstmkit: error: {error}\n")
    except MemoryError as error:  # Python's and numpy's allocations (reading a corpus); torch's: RuntimeError, below
        said = f" ({error})" if str(error) else ""  # numpy's: "Unable to allocate 8.00 GiB for an array with shape ..."
        stop(1, out_of_memory_message(said, in_python=True))
    except RuntimeError as error:
        if peer_stopped(error):  # another stopped: rank 0 said why (the others follow silently), or it did above
            stop(1, "lstmkit: error: another process of this run stopped, and this one cannot go on without it (its "
                    "reason is above, where it could give one)\n" if main_process else "")
        if "cannot cache function" in str(error) and "no locator available" in str(error):  # numba's, in librosa
            stop(1, "lstmkit: error: librosa's compiler, numba, found no folder it can write its cache in (read-only "
                    "installed packages and home folder, a deployed model run as another user): set NUMBA_CACHE_DIR "
                    "to a writable folder, e.g. NUMBA_CACHE_DIR=/tmp/numba\n")
        shortage = out_of_memory(error)
        if shortage is None:
            raise
        stop(1, out_of_memory_message(shortage))
    return 0


def out_of_memory_message(detail: str, in_python: bool = False) -> str:
    """What a run that ran out of memory (`detail`: the allocator's words, in brackets, or "") is
    told; `in_python`: in Python's or numpy's allocations (a MemoryError), where a corpus is read."""
    corpus = "corpus, " if in_python else ""
    return (f"lstmkit: error: out of memory{detail}: give a smaller {corpus}batch, sequence length (--T, --seq-len) "
            "or model\n")


def wait_for_rank_0(status: int | str | None) -> None:
    """In a process other than rank 0 that stops: wait PEER_GRACE_SECONDS for rank 0 to say
    why and end the run; torchrun then stops this process (SIGTERM), which ends it at once,
    silently, with `status`."""
    on_interrupts(lambda signal_number, frame: os._exit(status if isinstance(status, int) else 1))
    time.sleep(PEER_GRACE_SECONDS)


def peer_stopped(error: RuntimeError) -> bool:
    """Whether `error` is gloo's, raised because another process left the group: under torchrun
    rank 0 alone writes checkpoints and files, and when that fails (a full disk) it says so and
    stops, and the others' next collective fails with "Connection closed by peer". Any other
    error (NCCL's own, say, which is this process's) is shown."""
    return any(text in str(error) for text in ("Connection closed by peer", "Connection reset by peer"))


def out_of_memory(error: RuntimeError) -> str | None:
    """Where `error` is an allocator's (CPU or CUDA) failure, what it tried to allocate
    (" (tried to allocate 8000 GB)", or "" where it does not say); None for any other error."""
    text = str(error)
    if "can't allocate memory" not in text and "out of memory" not in text.lower():
        return None
    in_bytes = re.search(r"tried to allocate (\d+) bytes", text)  # the CPU allocator's
    if in_bytes:
        return f" (tried to allocate {int(in_bytes.group(1)) / 1e9:,.1f} GB)"
    in_units = re.search(r"tried to allocate ([\d.]+ [KMGT]iB)", text, re.IGNORECASE)  # CUDA's
    return f" (tried to allocate {in_units.group(1)})" if in_units else ""


if __name__ == "__main__":
    sys.exit(main())
