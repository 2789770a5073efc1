"""What a library holds, read directly, for tests that compare two libraries or watch one
being written by another process."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session


def held(library_dir: Path) -> dict:
    """path → (content hash, vector); skipped path → reason; a video's path → its moments'
    times and vectors."""
    from mmsearch import open_library
    from mmsearch.storage.schema import ImageRow, SkippedFile

    with open_library(library_dir, create=False) as lib, Session(lib.engine) as session:
        rows = session.execute(select(ImageRow.id, ImageRow.path, ImageRow.content_hash,
                                      ImageRow.embedding)).all()  # fmt: skip
        skipped = dict(session.execute(select(SkippedFile.path, SkippedFile.reason)).all())
        moments = lib.images.moments_of([r.id for r in rows])
    paths = {r.id: r.path for r in rows}
    return {
        "images": {r.path: (r.content_hash, np.frombuffer(r.embedding, np.float32)) for r in rows},
        "skipped": skipped,
        "moments": {paths[i]: m for i, m in moments.items()},
    }


def stored_count(library_dir: Path) -> int:
    """Images stored so far, read as any other process would while an indexer writes."""
    try:
        with closing(sqlite3.connect(f"file:{library_dir / 'library.db'}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
