"""The public surface: one explicit __all__, and a CLI whose --help loads no heavy library."""

from __future__ import annotations

import subprocess
import sys

import mmsearch


def test_all_is_sorted_and_complete():
    assert mmsearch.__all__ == sorted(mmsearch.__all__)
    public = {
        name
        for name, value in vars(mmsearch).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("mmsearch")
    }
    assert public == set(mmsearch.__all__)


def test_help_does_not_import_torch_open_clip_or_faiss():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mmsearch.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'search' in result.output\n"
        "print(sorted(m for m in ('torch', 'open_clip', 'faiss') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
