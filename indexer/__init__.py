"""The ingestion pipeline: image folders and text collections into an mmsearch library."""

from indexer.pipeline import IndexInterrupted, IndexSummary, index_paths
from indexer.ray_engine import RayEngine
from indexer.texts import TextFile, read_text_file

__all__ = [
    "IndexInterrupted",
    "IndexSummary",
    "RayEngine",
    "TextFile",
    "index_paths",
    "read_text_file",
]
