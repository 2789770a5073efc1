"""The ingestion pipeline: image folders and text collections into an mmsearch library."""

from indexer.pipeline import IndexInterrupted, IndexSummary, index_paths
from indexer.texts import TextFile, read_text_file

__all__ = ["IndexInterrupted", "IndexSummary", "TextFile", "index_paths", "read_text_file"]
