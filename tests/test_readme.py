"""The README's Python examples run as written.

Blocks fenced ```python run here; the few fenced ```py need a data file and minutes of
training (the `lm` and `forecast` examples), and tests/test_lm.py and tests/test_forecast.py
make the same calls on small data.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    """Run in a folder of its own, its temporary files too (tempfile.mkdtemp), so none are left."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), {})


def test_readme_has_python_examples():
    assert BLOCKS


def test_the_job_example_prints_its_number_with_one_process_and_under_torchrun(tmp_path):
    """Under torchrun its `train_loss` read `model.weight` of DistributedDataParallel's wrapper:
    `'DistributedDataParallel' object has no attribute 'weight'`."""
    from test_training import free_port

    [example] = [block for block in BLOCKS if "class Mean(Job)" in block]
    expected = re.search(r"# (\d\.\d{4} cpu)", example).group(1)
    script = tmp_path / "mean.py"
    script.write_text(example)
    one = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
                          "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "--redirects", "1",
                          "--log-dir", str(tmp_path / "logs"), str(script)],  # each process's print a file of its own
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert one.stdout.splitlines() == [expected], one.stderr[-2000:]
    printed = [path.read_text().splitlines() for path in sorted((tmp_path / "logs").rglob("stdout.log"))]
    assert two.returncode == 0 and printed == [[expected], [expected]], two.stderr[-2000:]


def test_every_test_the_docs_name_exists():
    """docs/reliability.md and the README prove their rows by naming tests (`test_cli.py::test_…`,
    then `::test_…` for another of the same file, or `test_…` alone where a section says which
    file): each must be a test of that file (of some file, where no section says)."""
    tests = README.parent / "tests"
    missing = []
    for document in (README, *sorted((README.parent / "docs").glob("*.md"))):
        test_file = None
        for file_name, test_name in re.findall(r"(test_\w+\.py)?::(test_\w+)", document.read_text(encoding="utf-8")):
            test_file = file_name or test_file
            if test_file is None or f"def {test_name}(" not in (tests / test_file).read_text(encoding="utf-8"):
                missing.append(f"{document.name}: {test_file}::{test_name}")
    defined = set(re.findall(r"^def (test_\w+)\(", "".join(path.read_text(encoding="utf-8")
                                                        for path in tests.glob("test_*.py")), flags=re.MULTILINE))
    for document in (README, *sorted((README.parent / "docs").glob("*.md"))):  # named alone
        for section in re.split(r"\n(?=## )", document.read_text(encoding="utf-8")):
            said = re.search(r"A test named without its file is in `tests/(test_\w+\.py)`", section)
            in_file = None if said is None else (tests / said.group(1)).read_text(encoding="utf-8")
            missing += [f"{document.name}: {name}" for name in re.findall(r"(?<![:\w])`(test_\w+)`", section)
                        if (name not in defined if in_file is None else f"def {name}(" not in in_file)]
    assert not missing
