"""The README's Python API example, saved as a script and run exactly as written.

A new user pastes it into a file and runs it: no ``if __name__ == "__main__":`` guard, and the
indexer spawns decoder workers (which once ran the script again each, and failed).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    section = (REPO / "README.md").read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


@pytest.mark.slow
def test_the_python_example_runs_as_an_unguarded_script(tmp_path):
    code = readme_example()
    assert "__main__" not in code  # the point: a plain script
    script = tmp_path / "example.py"
    script.write_text(code)
    (tmp_path / "sample_corpus").symlink_to(REPO / "sample_corpus")
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "BrokenProcessPool" not in run.stderr and "LibraryBusyError" not in run.stderr
    summary = ast.literal_eval(run.stdout.splitlines()[0])  # it prints summary.to_dict()
    assert summary["added"] == 240 and not summary["skipped"]
    first_hit = run.stdout.splitlines()[1]  # the best match for "flag"
    assert "flag" in first_hit.lower(), run.stdout
