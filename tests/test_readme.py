"""The README's Python examples run as written.

Blocks fenced ```python run here; the few fenced ```py need a data file and minutes of
training (the `lm` and `forecast` examples), and tests/test_lm.py and tests/test_forecast.py
make the same calls on small data.
"""

from __future__ import annotations

import re
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
