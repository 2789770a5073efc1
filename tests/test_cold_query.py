"""A one-shot text query imports neither torch nor open_clip, for either bundled model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from indexer import index_paths
from mmsearch import open_library
from tests.conftest import SAMPLE_CORPUS

QUERY = """
import json, sys
from mmsearch import open_library
from mmsearch.search.terms import QueryTerm
with open_library(sys.argv[1], create=False) as library:
    hits = library.search([QueryTerm(1.0, text="a flag")], k=3)
print(json.dumps({"hits": [h.path for h in hits],
                  "heavy": sorted(m for m in ("torch", "open_clip", "timm") if m in sys.modules)}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("model", ["lite0-muse-clipart-memory-jmdict", "clipart-mini"])
def test_cold_text_query_needs_no_torch(tmp_path, model):
    folder = tmp_path / "drawings"
    folder.mkdir()
    for path in sorted((SAMPLE_CORPUS / "images/signs_and_symbols/flags").rglob("*.png"))[:6]:
        (folder / path.name).write_bytes(path.read_bytes())
    with open_library(tmp_path / "lib", model=model) as library:
        index_paths(library, [folder], workers=0)
        library.prepare_text_queries()  # what `mmsearch index` does at the end of a run
    run = subprocess.run(
        [sys.executable, "-c", QUERY, str(tmp_path / "lib")],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(run.stdout)
    assert len(result["hits"]) == 3
    assert result["heavy"] == []


def test_the_command_freezes_what_it_made_before_the_interpreter_tears_down(monkeypatch):
    # The teardown's garbage collections would walk every object the imports made: 0.2 s of
    # a cold `mmsearch search` (BENCHMARKS.md). Frozen objects are skipped.
    import gc

    from mmsearch.cli import main

    monkeypatch.setattr(sys, "argv", ["mmsearch", "--help"])
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit):
            main()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
