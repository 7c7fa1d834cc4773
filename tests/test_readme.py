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
