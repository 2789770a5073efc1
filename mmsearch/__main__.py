"""``python -m mmsearch``: the same CLI as the ``mmsearch`` command."""

from mmsearch.cli import main

main()
