"""The papermill ``parameters`` cell of notebooks/02_train.ipynb, and the config it gives; the
unknown-name check of every notebook's parameters.

The cell is written from TrainConfig (``parameters_cell_source``), so its names, types and help
are the dataclass's and no default is written twice. Every field defaults to ``None``, meaning
"from the preset": ``preset`` (default ``'tiny'``) gives the values, and only the parameters set
to something else override it. ``papermill -p preset gpu`` is the gpu preset; ``-p preset gpu -p lr 3e-4``
that preset with another learning rate. The cell itself keeps ``data`` and ``out``: where the
notebook reads and writes, relative to notebooks/.

papermill only warns about an injected name that the cell does not define (``-p lamda_jepa 2``);
``notebook_config`` makes that an error listing the valid names.
"""
from __future__ import annotations

import contextlib
import difflib
import sys
import types
import typing
from dataclasses import fields

from jepa_kit.config import TRAIN_PRESETS, ConfigError, TrainConfig

DEFAULT_PRESET = "tiny"  # CPU-sized: the notebook trains in minutes as committed
# where the notebook reads and writes, relative to notebooks/ (not part of any preset)
LOCATIONS = {"data": "../data/tiny", "out": "../runs/02_train"}
# globals a kernel defines by itself (IPython's history and shortcuts)
_KERNEL_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}
_LITERALS = (str, int, float, bool, type(None), list, dict, tuple)


def parameter_names() -> list[str]:
    return ["preset", *TrainConfig.field_names()]


def _annotation(tp) -> str:
    # papermill reads `name: Optional[int] = ...` but not `int | None`
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if args:
        return f"Optional[{args[0].__name__}]"
    return tp.__name__


def parameters_cell_source() -> str:
    """The source of 02_train's parameters cell: one annotated, commented line per parameter."""
    hints = typing.get_type_hints(TrainConfig)
    lines = ["# None = from the preset. papermill -p NAME VALUE overrides one; see the markdown above.",
             f"preset: str = {DEFAULT_PRESET!r}  # training preset: {' | '.join(TRAIN_PRESETS)} (jepa_kit.config.TRAIN_PRESETS)"]
    for f in fields(TrainConfig):
        value = LOCATIONS.get(f.name)
        annotation = _annotation(hints[f.name])
        if value is None and not annotation.startswith("Optional"):
            annotation = f"Optional[{annotation}]"
        help = f.metadata["help"].replace(" = ", ": ")  # papermill skips a line with a second '='
        lines.append(f"{f.name}: {annotation} = {value!r}  # {help}")
    return "\n".join(lines)


def check_notebook_parameters(namespace: dict, names: list[str] | None = None) -> None:
    """Raise ConfigError when ``namespace`` (a notebook's ``globals()``) holds a parameter-like
    value (a literal: str, number, bool, None, list, dict) under a name the parameters cell does
    not define (``names``; default 02_train's), which is what papermill leaves behind for
    ``-p lamda_jepa 2``."""
    names = list(names or parameter_names())
    known = set(names)
    unknown = sorted(n for n, v in namespace.items()
                     if n not in known and not n.startswith("_") and n not in _KERNEL_NAMES
                     and isinstance(v, _LITERALS) and not isinstance(v, types.ModuleType))
    if unknown:
        hints = [f"{n!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(n, known, 1)) else repr(n)
                 for n in unknown]
        raise ConfigError(f"unknown notebook parameter{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
                          f"valid names are: {', '.join(names)}")


def check_parameters(namespace: dict, names: list[str]) -> None:
    """For notebooks 01 and 03, as the first line after their parameters cell: an injected name
    that is not one of ``names`` fails the run, listing them. Not in a live notebook, whose
    later cells leave their own variables behind when the cells are re-run."""
    from jepa_kit.runtime import notebook_kernel
    if notebook_kernel() != "live":
        check_notebook_parameters(namespace, names)


def notebook_config(namespace: dict, strict: bool | None = None) -> TrainConfig:
    """The TrainConfig of 02_train's parameters (pass ``globals()``): the preset, then every
    parameter that is not None. ``strict`` (default: except in a live notebook, whose later cells
    leave their own variables behind when this cell is re-run) fails on unknown names
    (``check_notebook_parameters``); papermill is the only way to inject a misspelt one."""
    from jepa_kit.runtime import notebook_kernel
    if strict if strict is not None else notebook_kernel() != "live":
        check_notebook_parameters(namespace)
    missing = [n for n in parameter_names() if n not in namespace]
    if missing:
        raise ConfigError(f"the parameters cell lacks: {', '.join(missing)}")
    values = {n: namespace[n] for n in TrainConfig.field_names() if namespace[n] is not None}
    return TrainConfig.from_dict(values, where="notebook parameters", preset=namespace["preset"] or DEFAULT_PRESET)


@contextlib.contextmanager
def logs_to_stdout():
    """Send the trainer's log lines (printed to stderr) to stdout for the block, so a notebook
    shows them as ordinary output rather than on the error-coloured stderr background."""
    with contextlib.redirect_stderr(sys.stdout):
        yield
