"""Where a library lives: ``--library DIR``, else ``$MMSEARCH_LIBRARY``, else the user data dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV_VAR = "MMSEARCH_LIBRARY"
DB_FILE = "library.db"
CONFIG_FILE = "library.json"  # settings that must be known before the database is opened


def default_library_dir() -> Path:
    """``$XDG_DATA_HOME/mmsearch`` on Linux (``~/.local/share/mmsearch``), the OS norm elsewhere."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("mmsearch", appauthor=False))


def resolve_library_dir(path: str | os.PathLike[str] | None = None) -> Path:
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return default_library_dir()


def read_config(library_dir: Path) -> dict:
    try:
        return json.loads((library_dir / CONFIG_FILE).read_text())
    except FileNotFoundError:
        return {}


def write_config(library_dir: Path, config: dict) -> None:
    (library_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def sqlite_url(library_dir: Path) -> str:
    return f"sqlite:///{(library_dir / DB_FILE).resolve()}"
