"""The moments of videos (MomentRow): a video is one item in ``images`` whose sampled frames
(mmsearch.imaging.video) are stored here, each with its vector, and searched in their own
derived index, ``moments``. Writes happen inside the image catalogue's transactions (a video's
moments change with its row); these are the reads searches and ``info`` make."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from mmsearch.records import MomentRecord
from mmsearch.storage.engine import bump_generation, chunked
from mmsearch.storage.schema import ImageRow, MomentRow


class VideoMoments:
    """What the image catalogue answers of videos (a base of ImageCatalogue)."""

    _engine: Engine  # set by the catalogue
    _indexes: object  # the library's DerivedIndexes (a layer above this one)

    def moment_owners(self, moment_ids: Sequence[int]) -> dict[int, int]:
        """moment id → the id of its video."""
        found = {}
        with Session(self._engine) as session:
            for chunk in chunked(list(moment_ids)):
                stmt = select(MomentRow.id, MomentRow.image_id).where(MomentRow.id.in_(chunk))
                found.update(session.execute(stmt).all())
        return found

    def video_ids(self) -> list[int]:
        with Session(self._engine) as session:
            stmt = select(ImageRow.id).where(ImageRow.duration_s.is_not(None))
            return list(session.execute(stmt).scalars())

    def moment_ids(self, video_ids: Sequence[int]) -> np.ndarray:
        """The ids of these videos' moments (what a filter on videos allows of the moments)."""
        found = []
        with Session(self._engine) as session:
            for chunk in chunked(list(video_ids)):
                stmt = select(MomentRow.id).where(MomentRow.image_id.in_(chunk))
                found += session.execute(stmt).scalars().all()
        return np.array(found, dtype=np.int64)

    def moments_of(self, video_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """video id → (times, vectors) of its moments, in time order."""
        with Session(self._engine) as session:
            moments = load_moments(session, list(video_ids))
        return {
            video: (np.array([m.t for m in found]), np.stack([m.vector for m in found]))
            for video, found in moments.items()
        }

    def video_totals(self) -> tuple[int, int, float]:
        """(videos, their moments, their seconds)."""
        videos = select(func.count(), func.coalesce(func.sum(ImageRow.duration_s), 0.0)).where(
            ImageRow.duration_s.is_not(None)
        )
        with Session(self._engine) as session:
            count, seconds = session.execute(videos).one()
            moments = session.execute(select(func.count()).select_from(MomentRow)).scalar_one()
        return count, moments, float(seconds)

    def _moments_changed(self, generation, removed, added=None) -> None:
        """Tell the moment index what a committed transaction changed (at ``generation``)."""
        if generation is not None:
            self._indexes.apply("moments", generation, remove=removed, add=added)


def load_moments(session: Session, ids: list[int]) -> dict[int, list[MomentRecord]]:
    """The stored moments of these videos, in time order."""
    found: dict[int, list[MomentRecord]] = {}
    for chunk in chunked(ids):
        stmt = select(MomentRow.image_id, MomentRow.t, MomentRow.embedding).where(
            MomentRow.image_id.in_(chunk)
        )
        for image_id, t, blob in session.execute(stmt.order_by(MomentRow.image_id, MomentRow.t)):
            found.setdefault(image_id, []).append(MomentRecord(t, np.frombuffer(blob, np.float32)))
    return found


def drop_moments(session: Session, image_ids: list[int]) -> tuple[int | None, np.ndarray]:
    """Delete the moments of these images (videos) in this transaction: (the moment index's new
    generation, or None when they had none; the moment ids deleted)."""
    dropped = []
    for chunk in chunked(image_ids):
        where = MomentRow.image_id.in_(chunk)
        dropped += session.execute(select(MomentRow.id).where(where)).scalars().all()
        session.execute(delete(MomentRow).where(where))
    generation = bump_generation(session, "moments") if dropped else None
    return generation, np.array(dropped, dtype=np.int64)


def replace_moments(session, replaced: list[int], ids: list[int], records) -> tuple:
    """The moments of the images stored become the records' (for the moment index: its
    generation, the ids removed and (ids, vectors) added)."""
    generation, removed = drop_moments(session, replaced)
    rows = [
        MomentRow(image_id=image_id, t=m.t, embedding=np.asarray(m.vector, np.float32).tobytes())
        for image_id, record in zip(ids, records, strict=True)
        for m in record.moments
    ]
    if not rows:
        return generation, removed, None
    session.add_all(rows)
    session.flush()
    added = (
        np.array([r.id for r in rows], dtype=np.int64),
        np.stack([m.vector for r in records for m in r.moments]).astype(np.float32),
    )
    if generation is None:
        generation = bump_generation(session, "moments")
    return generation, removed, added
