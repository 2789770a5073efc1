"""Knowing within seconds that the Hugging Face Hub cannot be reached.

Without network, huggingface_hub retries each download for about two minutes before it fails.
A TCP connection to the Hub's host answers the same question in at most
:data:`PROBE_SECONDS`: when it cannot be made, the process goes offline (``HF_HUB_OFFLINE``),
so weights already in the cache load at once and missing ones fail at once, with mmsearch's
message that names the models that work offline.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlsplit

PROBE_SECONDS = 3.0


@functools.cache
def hub_reachable() -> bool:
    """Whether a TCP connection to the Hub's host (``HF_ENDPOINT``) can be opened."""
    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=PROBE_SECONDS):
            return True
    except OSError:
        return False


def go_offline_unless_reachable() -> None:
    """Put huggingface_hub in offline mode for this process when the Hub cannot be reached.

    A proxy (``HTTPS_PROXY``) may reach what a direct connection cannot: then nothing is probed
    and the Hub's own retries decide."""
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HTTPS_PROXY"):
        return
    if hub_reachable():
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True  # read from the environment only when imported
