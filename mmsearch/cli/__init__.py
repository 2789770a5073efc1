"""The ``mmsearch`` command. Each command parses options, calls one library function, prints.

Errors a user can cause (:class:`~mmsearch.errors.MMSearchError`) print ``Error: <message>`` to
stderr and exit 1; anything else is a bug and keeps its traceback. The commands live in one
module per kind (filling, asking, looking after a library; models); importing them registers
them on :data:`app`, in the order ``mmsearch --help`` lists them.
"""

from __future__ import annotations

import gc
import logging

from mmsearch.cli._common import app

# isort: off
# Importing the command modules registers their commands, in this order in `mmsearch --help`.
from mmsearch.cli import indexing, querying, upkeep, modelling  # noqa: F401, E402
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    # open_clip reports through the root logger ("No pretrained weights loaded", download
    # retries); our own errors say what matters, so keep those lines off the terminal.
    logging.getLogger().setLevel(logging.CRITICAL)
    try:
        app()
    finally:
        # The command is done; what is left is the interpreter's teardown, whose garbage
        # collections walk every object the imports made (SQLAlchemy's most of them): 0.2 s of
        # a cold query here. Frozen objects are not walked. Files, atexit handlers and modules
        # are closed as usual: only cycles of garbage go uncollected, as the process ends.
        gc.freeze()
