"""The `lstmkit` command: what `lstmkit cells` prints, and its errors."""

from __future__ import annotations

import pytest

import lstmkit
from lstmkit.cli import main


def test_cells_lists_every_cell_with_its_parameter_count(capsys):
    assert main(["cells", "--input-size", "5", "--hidden-size", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(lstmkit.cells.CELLS)
    for name, row in rows.items():
        layer = lstmkit.Recurrent(name, 5, 3)
        assert int(row[-1].replace(",", "")) == sum(p.numel() for p in layer.parameters()), name
        assert int(row[1]) == layer.cell.num_gates
    assert rows["lstm"][-1] == str(4 * 3 * (5 + 3) + 2 * 4 * 3)  # weights (4H, I + H) and two biases


def test_cells_prints_the_equations_from_the_code(capsys):
    main(["cells", "--equations"])
    output = capsys.readouterr().out
    assert "n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))" in output
    assert "o  = σ(· + p_o ⊙ c')" in output


@pytest.mark.parametrize("arguments, message", [
    (["cells", "--hidden-size", "0"], "argument --hidden-size: expected a positive integer, got 0"),
    (["cells", "--hidden-size", "x"], "argument --hidden-size: expected a positive integer, got 'x'"),
    (["cells", "--hidden-size", "1"], "lstmkit: error: cell 'layernorm' needs hidden_size >= 2"),
])
def test_bad_arguments_exit_with_a_message(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(arguments)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
