"""Files written so that a reader sees the old version or the new one, never half of either.

Every file the kit writes (data, checkpoints, metrics, results, reports) goes through here:
a temp file in the same directory, fsync, then ``os.replace``. A crash or a full disk leaves
the previous file in place and no stray temp file.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # not every filesystem lets a directory be opened; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path in the same directory; on success fsync it and os.replace it onto ``path``.

    On any error the temp file is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def read_json(path: str | Path, error: type[Exception] | None = None):
    """The parsed JSON of a file. With ``error``, a missing file, text that is not UTF-8 and invalid
    JSON raise ``error`` naming the file; without, the built-in exceptions pass through."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError) as e:
        if error is None:
            raise
        if isinstance(e, FileNotFoundError):
            why = "file not found"
        elif isinstance(e, json.JSONDecodeError):
            why = f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); truncated file?"
        else:
            why = f"not UTF-8 text ({e.reason})"
        raise error(f"{path}: {why}") from None


def read_yaml(path: str | Path, error: type[Exception] = ValueError):
    """A YAML file read with the safe loader (no object construction); problems raise ``error`` naming the file."""
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML ({e})") from None
