"""One training process per run directory: an exclusive lock file, ``<run>/.lock``.

Why a lock *file* created with O_CREAT | O_EXCL rather than ``fcntl``/``flock``: OSC's home and
project directories are NFS and scratch is GPFS; exclusive create is atomic on both (NFSv3 and
later), while ``flock`` on NFS depends on the lock daemon and can silently lock nothing. The file
holds who took it (host, PID, SLURM job id, time), so a refusal can say who holds the run.

A lock is stale, and is taken over, when its process is gone: on the same host, the PID no longer
runs; under SLURM, the lock was taken by this same job id (a requeued job resuming its own run,
possibly on another node). A lock held on another host by another job is never broken
automatically: the message says how to remove it by hand once that job is known to be dead.
"""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"


class RunLocked(RuntimeError):
    """Another live process is training into this run directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def process_gone(record: dict) -> bool:
    """Whether the process a status.json (or a lock) names is known to be dead: it ran on this host
    and its PID no longer runs. From another host nothing is known: False."""
    try:
        pid = int(record["pid"])
    except (KeyError, TypeError, ValueError):
        return False  # no PID on record: nothing is known
    return record.get("host") == socket.gethostname() and not _alive(pid)


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _stale(held: dict, me: dict) -> bool:
    if held.get("slurm_job_id") and held.get("slurm_job_id") == me["slurm_job_id"]:
        return True  # the same SLURM job, requeued: its earlier incarnation is gone
    return process_gone(held)  # on this host, and its PID no longer runs


@contextmanager
def run_lock(run_dir: str | Path):
    """Hold ``<run_dir>/.lock`` for the duration (creating ``run_dir`` if needed); raise RunLocked
    when a live process holds it. A stale lock (see the module docstring) is taken over."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    me = _holder()
    for _ in range(2):  # a second try after removing a stale lock
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = json.loads(path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                held = {}  # being written right now, or unreadable: treat as held
            if held and _stale(held, me):
                path.unlink(missing_ok=True)
                continue
            raise RunLocked(
                f"{run_dir} is being trained by another process (host {held.get('host', '?')}, pid "
                f"{held.get('pid', '?')}, SLURM job {held.get('slurm_job_id') or '-'}, since {held.get('since', '?')}). "
                f"Wait for it, or choose another out; if that process is dead, remove {path}") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise RunLocked(f"{path}: could not take the lock (another process keeps taking it)")
    try:
        yield path
    finally:
        try:
            if json.loads(path.read_text()).get("pid") == me["pid"]:
                path.unlink()
        except (OSError, json.JSONDecodeError):
            pass
