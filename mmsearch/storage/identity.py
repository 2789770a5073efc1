"""How the library recognises a file it already holds without reading every byte of it.

A first scan of a NAS must not read 2 TB to hash 80,000 RAW files whose previews take 3 MB
each to decode, so a file is hashed only when it could be a copy: when its size is one the
library already holds or that another file of the run has (a copy has its twin's size). Other
files are stored without a hash. When a later file has the size of a stored file without one,
that file is hashed then, if it is still on disk unchanged, so copies are always recognised by
their full hash, never by a sample.

A file renamed or moved within its file system keeps its inode: a new path whose inode, size
and modification time are those of a stored image whose path no longer holds that inode is the
same file under a new name (the evidence that already tells an unchanged file at its own path).
Its row takes the new path, keeping its id, vector and words, and nothing is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mmsearch.storage.engine import chunked
from mmsearch.storage.part import StoragePart
from mmsearch.storage.schema import ImageRow, ImageText
from mmsearch.words import name_words


class FileIdentity(StoragePart):
    """The part of the image catalogue that tells files apart (see the module docstring)."""

    def stored_sizes(self) -> set[int]:
        """The sizes of every stored image: a file of any other size is no copy of one."""
        with Session(self._engine) as session:
            return set(session.execute(select(ImageRow.size).distinct()).scalars())

    def unhashed(self, sizes: Iterable[int]) -> dict[str, tuple[int, int]]:
        """path → (size, mtime_ns) of the stored images without a hash whose size is one of
        ``sizes`` and whose files are unchanged on disk: the twins a new file of that size may
        have, which can be hashed now."""
        found = {}
        with Session(self._engine) as session:
            for chunk in chunked(sorted(set(sizes))):
                stmt = select(ImageRow.path, ImageRow.size, ImageRow.mtime_ns).where(
                    ImageRow.content_hash.is_(None), ImageRow.size.in_(chunk)
                )
                found.update((p, (s, m)) for p, s, m in session.execute(stmt).all())
        return {path: state for path, state in found.items() if _unchanged(path, *state)}

    def set_hashes(self, hashes: Mapping[str, tuple[str, int, int]]) -> None:
        """Store path → (hash, size, mtime_ns), where the row still describes that file."""
        with self._write() as session:
            for path, (digest, size, mtime_ns) in hashes.items():
                session.execute(
                    update(ImageRow)
                    .where(
                        ImageRow.path == path, ImageRow.size == size, ImageRow.mtime_ns == mtime_ns
                    )  # fmt: skip
                    .values(content_hash=digest)
                )

    def moved_files(self, files: Iterable) -> dict[str, str]:
        """new path → old path, for the ``files`` (paths the library does not hold, each with
        ``inode``, ``size``, ``mtime_ns``) that are stored images renamed or moved."""
        wanted = {f.inode: f for f in files if f.inode}
        moves: dict[str, str] = {}
        stmt = select(ImageRow.path, ImageRow.inode, ImageRow.size, ImageRow.mtime_ns)
        with Session(self._engine) as session:
            for chunk in chunked(list(wanted)):
                rows = session.execute(stmt.where(ImageRow.inode.in_(chunk))).all()
                for old, inode, size, mtime_ns in rows:
                    new = wanted[inode]
                    same = (size, mtime_ns) == (new.size, new.mtime_ns) and old != new.path
                    if same and new.path not in moves and not _holds(old, inode):
                        moves[new.path] = old
        return moves

    def set_inodes(self, inodes: Mapping[str, int]) -> None:
        """Store the inodes of unchanged images (rows from before inodes were kept)."""
        with self._write() as session:
            for path, inode in inodes.items():
                session.execute(update(ImageRow).where(ImageRow.path == path).values(inode=inode))

    def move_images(self, moves: Mapping[str, str]) -> None:
        """Give stored images their new paths (new → old), with their file and folder names."""
        with self._write() as session:
            for new, old in moves.items():
                image_id = session.execute(
                    select(ImageRow.id).where(ImageRow.path == old)
                ).scalar_one_or_none()
                if image_id is None:
                    continue
                session.execute(update(ImageRow).where(ImageRow.id == image_id).values(path=new))
                session.execute(
                    delete(ImageText).where(
                        ImageText.image_id == image_id, ImageText.kind == "name"
                    )
                )
                session.add(ImageText(image_id=image_id, kind="name", text=name_words(new)))


def _unchanged(path: str, size: int, mtime_ns: int) -> bool:
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return (stat.st_size, stat.st_mtime_ns) == (size, mtime_ns)


def _holds(path: str, inode: int) -> bool:
    """Whether ``path`` is still that file (a second hard link is a copy, not a move)."""
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False
