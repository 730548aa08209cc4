"""Block-causal attention masks and restarted position ids for packed rows.

A packed row is several blocks side by side, e.g. ``[F | R]`` for a JEPA item. Each
token may attend to earlier tokens of its own block only: causal inside a block,
nothing across blocks. Positions restart at 0 in every block, so each block is
encoded exactly as if it were run alone (GPT-2 has learned absolute positions).

Mask conventions (see DESIGN.md "Known traps"):

* additive float mask: 0 = may attend, ``torch.finfo(dtype).min`` = blocked. Never a
  boolean 4D mask (GPT-2 eager attention in transformers 5.x ignores it) and never 0/1.
* padding positions after the last block attend to themselves only, so every query
  row has an allowed key: no all-blocked row, no NaN from softmax, in any attention
  implementation. Real positions never attend to padding.

Masks are built once per (shape, dtype, device) and cached; treat them as read-only. They are
always built as normal tensors, even when the first caller runs under ``torch.inference_mode`` (an
evaluation): a cached inference tensor would make every later training step that reads it fail.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, wraps

import torch


def _normal_tensors(build):
    """``build`` with inference mode off. An evaluation runs the model under ``torch.inference_mode``;
    a table it built first would be an inference tensor, and a training step that later reads it
    from the cache (through a view: ``mask[None, None]``, ``pos.expand``) would fail with "Inference
    tensors cannot be saved for backward"."""
    @wraps(build)
    def built(*args):
        with torch.inference_mode(False):
            return build(*args)
    return built


def _normalise(block_lengths, total_len):
    lengths = tuple(int(n) for n in block_lengths)
    if not lengths or any(n <= 0 for n in lengths):
        raise ValueError(f"block lengths must be positive integers, got {list(block_lengths)}")
    used = sum(lengths)
    total = used if total_len is None else int(total_len)
    if total < used:
        raise ValueError(f"blocks {list(lengths)} need {used} positions, more than total_len={total}")
    return lengths, total


@lru_cache(maxsize=None)
@_normal_tensors
def _allowed(lengths: tuple[int, ...], total: int) -> torch.Tensor:
    # block index of each position; padding gets its own index per position (-1 - i)
    block = torch.cat([torch.full((n,), b) for b, n in enumerate(lengths)])
    pad = total - len(block)
    block = torch.cat([block, -1 - torch.arange(pad)])
    pos = torch.arange(total)
    same_block = block[:, None] == block[None, :]
    causal = pos[:, None] >= pos[None, :]
    return same_block & causal  # [total, total], True = may attend


def block_causal_allowed(block_lengths, total_len: int | None = None) -> torch.Tensor:
    """Boolean ``[L, L]`` view of the mask (True = query row may attend to key column), for drawing."""
    return _allowed(*_normalise(block_lengths, total_len)).clone()


@lru_cache(maxsize=None)
@_normal_tensors
def _additive(lengths, total, dtype, device) -> torch.Tensor:
    allowed = _allowed(lengths, total)
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.to(device)


def block_causal_mask(
    block_lengths, total_len: int | None = None, dtype: torch.dtype = torch.float32, device=None
) -> torch.Tensor:
    """Additive ``[L, L]`` mask for blocks of ``block_lengths`` tokens (L = ``total_len`` or their sum).

    0 where the query (row) may attend to the key (column), ``finfo(dtype).min`` elsewhere.
    Cached per (lengths, L, dtype, device): the same tensor comes back every call, do not
    modify it in place. Broadcast it to ``[B, 1, L, L]`` with ``mask[None, None]``.
    """
    if not dtype.is_floating_point:
        raise TypeError(f"block_causal_mask builds an additive float mask; dtype {dtype} is not a float type")
    lengths, total = _normalise(block_lengths, total_len)
    return _additive(lengths, total, dtype, torch.device(device) if device is not None else torch.device("cpu"))


@lru_cache(maxsize=None)
@_normal_tensors
def _positions(lengths, total, device) -> torch.Tensor:
    pos = torch.cat([torch.arange(n) for n in lengths] + [torch.zeros(total - sum(lengths), dtype=torch.long)])
    return pos.to(device)


def block_position_ids(block_lengths, total_len: int | None = None, device=None) -> torch.Tensor:
    """LongTensor ``[L]``: 0, 1, ... restarting at 0 in each block; padding positions get 0. Cached."""
    lengths, total = _normalise(block_lengths, total_len)
    return _positions(lengths, total, torch.device(device) if device is not None else torch.device("cpu"))


# -- the tables of a packed batch (jepa_kit.model's packed and static passes) -----------------

@dataclass(frozen=True)
class PackedLayout:
    """How a packed batch is laid out: rows ``width`` tokens wide, each row of one kind. A kind
    is its block lengths (padding after the last block) and the positions whose final hidden
    states are read."""

    width: int
    blocks: tuple[tuple[int, ...], ...]  # per kind
    reads: tuple[tuple[int, ...], ...]  # per kind
    n_ntp: tuple[int, ...]  # per kind: how many of the first reads are NTP positions

    @property
    def n_read(self) -> int:
        return max(len(r) for r in self.reads)


@lru_cache(maxsize=None)
@_normal_tensors
def layout_tables(layout: PackedLayout, dtype: torch.dtype, device: torch.device):
    """Per kind: additive masks [K, W, W], position ids [K, W], read positions [K, R] (a kind
    with fewer reads repeats its first; the extra outputs are ignored) and the mask rows at
    the read positions [K, R, W]. Built once per layout, dtype and device."""
    W, R = layout.width, layout.n_read
    masks = torch.stack([block_causal_mask(b, W, dtype, device) for b in layout.blocks])
    pos = torch.stack([block_position_ids(b, W, device) for b in layout.blocks])
    read = torch.tensor([r + (r[0],) * (R - len(r)) for r in layout.reads], device=device)
    mask_rows = masks[torch.arange(len(read), device=device)[:, None], read]
    return masks, pos, read, mask_rows


def static_tables(blocks: tuple[int, ...], reads: tuple[int, ...], dtype: torch.dtype, device):
    """Additive block-causal mask [W, W], restarted positions [W] and read positions [R] for blocks
    filling the row. Eager calls get them from a cache (building them copies host lists to the
    device, which waits for the GPU); under ``torch.compile`` they are built from Python constants
    and folded into the graph."""
    if torch.compiler.is_compiling():
        return _build_static_tables(blocks, reads, dtype, device)
    return _cached_static_tables(blocks, reads, dtype, torch.device(device))


def _build_static_tables(blocks, reads, dtype, device):
    block = torch.tensor([b for b, n in enumerate(blocks) for _ in range(n)], device=device)  # [W]
    pos = torch.tensor([i for n in blocks for i in range(n)], device=device)
    idx = torch.arange(len(block), device=device)
    allowed = (block[:, None] == block[None, :]) & (idx[:, None] >= idx[None, :])
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask, pos, torch.tensor(reads, device=device)


_cached_static_tables = lru_cache(maxsize=None)(_normal_tensors(_build_static_tables))


@dataclass
class PackedBatch:
    """A packed batch: ``tokens`` [N, W]; ``kind`` [N] indexes ``layout``'s kinds."""

    tokens: torch.Tensor
    kind: torch.Tensor
    layout: PackedLayout
