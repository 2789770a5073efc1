"""The public surface: one explicit __all__, and a CLI whose --help loads no heavy library."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mmsearch


def test_all_is_sorted_and_complete():
    """The public names load on first use (so ``--help`` stays fast); each one must exist."""
    assert mmsearch.__all__ == sorted(mmsearch.__all__)
    assert set(mmsearch.__all__) == set(mmsearch._EXPORTS)
    for name in mmsearch.__all__:
        assert getattr(mmsearch, name).__module__.startswith("mmsearch")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mmsearch.nope  # noqa: B018


def test_help_imports_no_heavy_library():
    """`mmsearch --help` prints at once: each command imports what it needs when it runs."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mmsearch.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'search' in result.output\n"
        "loaded = ('torch', 'open_clip', 'faiss', 'sqlalchemy', 'numpy', 'PIL')\n"
        "print(sorted(m for m in loaded if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
