"""The figures of the pipelines, written as PNG, PDF or SVG by their file's suffix (matplotlib,
no pyplot state)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.text import Text

from lstmkit.caller import warn_at_caller
from lstmkit.warning_filters import warnings_recorded
from lstmkit.files import FIGURE_SOFTWARE, FIGURE_SUFFIXES, atomic_path

# What matplotlib warns, at each drawing, for each character its fonts lack.
MISSING_GLYPH = re.compile(r"Glyph (\d+) .* missing from font\(s\) (.*)\.$")
COLOURS = {"rnn": "#d62728", "gru": "#2ca02c", "lstm": "#1f77b4", "peephole": "#9467bd",
           "cifg": "#ff7f0e", "layernorm": "#8c564b", "nig": "#e377c2", "nfg": "#7f7f7f", "nog": "#bcbd22",
           "niaf": "#17becf", "noaf": "#000000"}  # one per cell name, the LSTM's ablations included


def save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    written = path.suffix.lower() if path.suffix.lower() in FIGURE_SUFFIXES else ".png"
    # A user's '$' (a target named 'cost in $US') is drawn as written, not read as TeX, which failed
    # at the end of a run or dropped the text between two of them. Tick labels, empty until drawn,
    # keep matplotlib's own TeX (a log axis's 10^-4).
    for text in figure.findobj(Text):
        if "$" in text.get_text():
            text.set_parse_math(False)
    with atomic_path(path) as temporary, warnings_recorded() as warned:
        figure.savefig(temporary, dpi=100, bbox_inches="tight", format=written.removeprefix("."),
                       metadata={"Software": FIGURE_SOFTWARE} if written == ".png" else None)
    missing = {}  # glyph: font, from matplotlib's warning for each character at each drawing
    for warning in warned:
        glyph = MISSING_GLYPH.match(str(warning.message))
        if glyph:
            missing[chr(int(glyph[1]))] = glyph[2]
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if missing:
        shown = ", ".join(f"{character!r}" for character in list(missing)[:5]) + (", ..." if len(missing) > 5 else "")
        warn_at_caller(f"{path}: {len(missing)} character(s) of its text are drawn as boxes ({shown}): the figure's "
                       f"font, {', '.join(sorted(set(missing.values())))}, lacks them; matplotlib uses a font that has "
                       "them where its configuration names it (font.family in matplotlibrc)")
    return path


def learning_curves(curves: Mapping[str, Sequence[tuple[int, float]]], baseline: float, title: str,
                    ylabel: str, path: str | Path) -> Path:
    """Test loss against training step, one line per cell, the baseline dashed."""
    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    for cell, points in curves.items():
        steps, losses = zip(*points, strict=True)
        finite = sum(map(np.isfinite, losses))  # one point (a cell that diverged at once), which a line does not show
        axes.plot(steps, losses, label=cell, color=COLOURS.get(cell), linewidth=1.5,
                  marker="o" if finite == 1 else None)
    axes.axhline(baseline, color="grey", linestyle="--", linewidth=1, label=f"baseline {baseline:.3g}")
    axes.set(title=title, xlabel="training step", ylabel=ylabel, yscale="log")
    axes.legend()
    axes.grid(alpha=0.3)
    return save(figure, path)


def gradient_norms(profiles: Mapping[str, Mapping[str, np.ndarray]], title: str, path: str | Path) -> Path:
    """||d loss / d h_t|| against t, log scale: one panel per moment, one line per cell."""
    moments = list(profiles)
    figure = Figure(figsize=(5 * len(moments), 4))
    axes_list = np.atleast_1d(figure.subplots(1, len(moments), sharey=True))
    for axes, moment in zip(axes_list, moments, strict=True):
        for cell, norms in profiles[moment].items():
            axes.plot(np.arange(len(norms)), norms, label=cell, color=COLOURS.get(cell), linewidth=1.5)
        axes.set(title=f"{title}: {moment}", xlabel="time step t", yscale="log")
        axes.grid(alpha=0.3)
    axes_list[0].set_ylabel("mean ||d loss / d h_t||")
    axes_list[0].legend()
    return save(figure, path)


def gate_heatmaps(panels: Mapping[str, np.ndarray], title: str, path: str | Path, *, gates: Collection[str]) -> Path:
    """One heat map per panel (hidden unit x time step), stacked vertically: the `gates`
    (sigmoids) on 0..1, the others (a candidate, the cell state) signed around 0, whatever
    range their values happen to span."""
    figure = Figure(figsize=(10, 2.2 * len(panels)))
    axes_list = np.atleast_1d(figure.subplots(len(panels), 1, sharex=True))
    for axes, (name, values) in zip(axes_list, panels.items(), strict=True):
        gate = name in gates
        scale = max(float(np.abs(values).max()), 1e-12)
        image = axes.imshow(values.T, aspect="auto", interpolation="nearest", cmap="viridis" if gate else "RdBu_r",
                            vmin=0 if gate else -scale, vmax=1 if gate else scale)
        axes.set_ylabel(f"{name}\nunit")
        figure.colorbar(image, ax=axes, fraction=0.02, pad=0.01)
    axes_list[0].set_title(title)
    axes_list[-1].set_xlabel("time step t")
    return save(figure, path)


def forecast_backtest(panels: Mapping[str, Mapping], interval: str, path: str | Path) -> Path:
    """One panel per target: the actual series, the forecast predict uses (`method`: the
    model's, a baseline's or a combination) with its interval over the held-out rows, and the
    seasonal naive forecast dashed."""
    figure = Figure(figsize=(10, 3.5 * len(panels)))
    axes_list = np.atleast_1d(figure.subplots(len(panels), 1))
    for axes, (name, panel) in zip(axes_list, panels.items(), strict=True):
        times, values = panel["history"]
        axes.plot(times, values, color="black", linewidth=1, label="actual")
        axes.fill_between(panel["time"], panel["lower"], panel["upper"], color=COLOURS["lstm"], alpha=0.2,
                          label=interval)
        axes.plot(panel["time"], panel["forecast"], color=COLOURS["lstm"], linewidth=1.5,
                  label=f"forecast ({panel['method']})")
        if panel["seasonal_naive"] is not None:
            axes.plot(panel["time"], panel["seasonal_naive"], color=COLOURS["cifg"], linestyle="--", linewidth=1,
                      label="seasonal naive")
        axes.axvline(panel["time"][0], color="grey", linewidth=0.8)
        axes.set(title=f"{name}: backtest on the held-out rows", ylabel=name)
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left", fontsize=8)
    return save(figure, path)


def translation_curves(history: Sequence[Mapping], title: str, path: str | Path) -> Path:
    """Training and validation loss against epoch and, beside them, validation BLEU."""
    figure = Figure(figsize=(10, 4))
    loss_axes, bleu_axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for name, label, colour in (("train_loss", "training (label-smoothed)", COLOURS["cifg"]),
                                ("val_loss", "validation", COLOURS["lstm"])):
        points = [(epoch, row[name]) for epoch, row in zip(epochs, history, strict=True) if row.get(name) is not None]
        if points:
            loss_axes.plot(*zip(*points, strict=True), marker="o", label=label, color=colour, linewidth=1.5)
    loss_axes.set(title=title, xlabel="epoch", ylabel="loss (nats per target token)")
    loss_axes.legend()
    bleu = [(epoch, row["val_bleu"]) for epoch, row in zip(epochs, history, strict=True) if "val_bleu" in row]
    if bleu:
        bleu_axes.plot(*zip(*bleu, strict=True), marker="o", color=COLOURS["gru"], linewidth=1.5)
    bleu_axes.set(title="validation BLEU (greedy decoding)", xlabel="epoch", ylabel="BLEU")
    for axes in (loss_axes, bleu_axes):
        axes.grid(alpha=0.3)
    return save(figure, path)


def attention_matrix(source: Sequence[str], target: Sequence[str], weights: np.ndarray, path: str | Path) -> Path:
    """The attention weights of one translation: a row per target subword, a column per source subword."""
    figure = Figure(figsize=(max(4.0, 0.45 * len(source) + 2), max(3.0, 0.4 * len(target) + 1.5)))
    axes = figure.subplots()
    image = axes.imshow(np.asarray(weights), aspect="auto", interpolation="nearest", cmap="Greys", vmin=0, vmax=1)
    axes.set_xticks(range(len(source)), list(source), rotation=60, ha="right")
    axes.set_yticks(range(len(target)), list(target))
    axes.set(xlabel="source subwords", ylabel="translation subwords")
    figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02)
    return save(figure, path)


def draw_speech(path: str | Path, frames, probabilities, labels: Sequence[str], stack: int, frame_rate: float,
                title: str) -> Path:
    """Three panels over time in seconds: the log-mel spectrogram (normalised), the model's
    probability of each label (blank "_" first) at each step, and the CTC alignment: the
    likeliest label of each step, a character where it is not the blank."""
    frames, probabilities = np.asarray(frames), np.asarray(probabilities)
    seconds = len(frames) / frame_rate
    step = stack / frame_rate
    figure = Figure(figsize=(10, 7))
    spectrum, posterior, alignment = figure.subplots(3, 1, sharex=True, height_ratios=[3, 3, 1])
    spectrum.imshow(frames.T, aspect="auto", origin="lower", interpolation="nearest", cmap="magma",
                    extent=(0, seconds, 0, frames.shape[1]))
    spectrum.set(title=title, ylabel="mel band")
    posterior.imshow(probabilities.T, aspect="auto", origin="lower", interpolation="nearest", cmap="Greys",
                     vmin=0, vmax=1, extent=(0, len(probabilities) * step, -0.5, len(labels) - 0.5))
    posterior.set_yticks(range(len(labels)), [repr(label)[1:-1] if label != " " else "␣" for label in labels],
                         fontsize=7)
    posterior.set_ylabel("label probability")
    best = probabilities.argmax(1)
    for position, label in enumerate(best):
        if label != 0:
            centre = (position + 0.5) * step
            alignment.axvspan(position * step, (position + 1) * step, color="#1f77b4", alpha=0.25)
            alignment.text(centre, 0.5, labels[label] if labels[label] != " " else "␣", ha="center", va="center")
    alignment.set(xlabel="time (s)", yticks=[], ylabel="likeliest\nlabel", xlim=(0, seconds))
    return save(figure, path)
