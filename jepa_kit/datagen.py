"""Synthetic entity-relation-entity facts in the user's format (the OSU reversal-curse layout).

Two settings, chosen by ``entity_tokens``:

* 2, the surface setting: entities are (first, last) name pairs ``<f_i> <l_j>`` over A and B
  together; each name token is shared by exactly ``multiplicity`` entities and every pair is
  unique. Rows ``[h_f, h_l, r, <mask>, t_f, t_l]``.
* 1, the abstract setting of the binding paper: every entity is one token of its own, named as
  that paper's generator names them, ``<s_i>`` for the i-th entity of A and ``<t_j>`` for the j-th
  of B (multiplicity 1). Rows ``[h, r, <mask>, t]``.

The vocabulary is laid out as the paper's: entity tokens (ids in arbitrary order), ``<mask>``,
``<r_i>``/``<r_i_inv>`` interleaved, ``<pad>``, then ``<PRED>``. Facts over A are written in both
directions (type "train"); facts over B in one direction chosen by a coin flip (type "atomic"),
and the other direction is held out (type "test"). Within one relation pair every entity is the
head of at most one fact and the tail of at most one, so every query has a single answer, in
both directions.

How the facts of a relation pair are laid out, chosen by ``structure``:

* "shift" (the kit's presets): every entity is the head of ``facts_per_entity`` facts under as
  many relation pairs, its tail given by a cyclic shift in a random order; an entity can be a
  head and a tail under the same relation, so facts form chains.
* "pairing" (the binding paper's generator, and so the user's data): every relation pair is a
  random perfect matching of each set, one fact per pair of entities, so every entity takes part
  in every relation pair exactly once, either as the head of ``<r_i>`` or as its tail. The
  counts are the same as "shift" with ``facts_per_entity`` = ``relation_pairs`` / 2.

Deterministic: the same parameters and seed give byte-identical files.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from jepa_kit.files import atomic_write_bytes
from jepa_kit.vocab import MASK, PAD, PRED


@dataclass(frozen=True)
class GenParams:
    entities_a: int          # set A: facts seen in both directions
    entities_b: int          # set B: facts seen in one direction, the other held out
    multiplicity: int = 10   # entities sharing each name token
    relation_pairs: int = 6
    facts_per_entity: int = 3  # facts per entity as head, on average (<= relation_pairs)
    valid_per_split: int = 3000
    entity_tokens: int = 2   # 2: (first, last) names, the surface setting; 1: one token per entity, the abstract one
    structure: str = "shift"  # "shift" or "pairing" (the paper's generator): see the module docstring


_surface = dict(multiplicity=10, relation_pairs=6, facts_per_entity=3, entity_tokens=2)
_abstract = dict(multiplicity=1, relation_pairs=6, facts_per_entity=3, entity_tokens=1)
PRESETS = {
    "paper": GenParams(entities_a=50_000, entities_b=30_000, valid_per_split=3000, **_surface),
    "small": GenParams(entities_a=5_000, entities_b=3_000, valid_per_split=1000, **_surface),
    # mid_abstract's sizes, two name tokens per entity: papermill_runs/binding_mid_surface.yaml
    "mid": GenParams(entities_a=1_500, entities_b=900, valid_per_split=1000, **_surface),
    "tiny": GenParams(entities_a=400, entities_b=200, valid_per_split=200, **_surface),
    # the same sizes and splits with one token per entity (the paper's abstract data is paper_abstract)
    "paper_abstract": GenParams(entities_a=50_000, entities_b=30_000, valid_per_split=3000, **_abstract),
    "small_abstract": GenParams(entities_a=5_000, entities_b=3_000, valid_per_split=1000, **_abstract),
    # between tiny_abstract (600 entities) and small_abstract (8,000): papermill_runs/binding_mid.yaml
    "mid_abstract": GenParams(entities_a=1_500, entities_b=900, valid_per_split=1000, **_abstract),
    # between mid_abstract (2,400) and small_abstract (8,000): papermill_runs/binding_midlarge.yaml
    "midlarge_abstract": GenParams(entities_a=3_000, entities_b=1_800, valid_per_split=1000, **_abstract),
    "tiny_abstract": GenParams(entities_a=400, entities_b=200, valid_per_split=200, **_abstract),
    # tiny and tiny_abstract laid out as the paper's generator lays out its facts (structure "pairing"):
    # papermill_runs/binding_controls_paired.yaml
    "tiny_paired": GenParams(entities_a=400, entities_b=200, valid_per_split=200, structure="pairing", **_surface),
    "tiny_abstract_paired": GenParams(entities_a=400, entities_b=200, valid_per_split=200, structure="pairing",
                                      **_abstract),
}
STRUCTURES = ("shift", "pairing")

_RENAMED = {"patch_len": "entity_tokens"}  # old name -> current name, still accepted with a warning


def _renamed(d: dict) -> dict:
    out = dict(d)
    for old, new in _RENAMED.items():
        if old in out:
            warnings.warn(f"GenParams.{old} is now called {new}", DeprecationWarning, stacklevel=3)
            if new in out and out[new] != out[old]:
                raise ValueError(f"both {old}={out[old]} and {new}={out[new]} given; {old} is the old name of {new}")
            out[new] = out.pop(old)
    return out


def resolve(preset_or_params: str | GenParams | dict, **overrides) -> GenParams:
    """A preset name, a GenParams or a dict of its fields, with ``overrides`` applied, validated.

    With ``entity_tokens`` 1 every entity is its own token, so ``multiplicity`` becomes 1 (asking
    for another multiplicity with 1-token entities is an error)."""
    overrides = _renamed(overrides)
    if isinstance(preset_or_params, GenParams):
        params = preset_or_params
    elif isinstance(preset_or_params, dict):
        params = GenParams(**_renamed(preset_or_params))
    elif preset_or_params in PRESETS:
        params = PRESETS[preset_or_params]
    else:
        raise ValueError(f"unknown data preset {preset_or_params!r}; choose one of {', '.join(PRESETS)}")
    params = replace(params, **overrides)
    if params.entity_tokens == 1 and params.multiplicity != 1:
        if "multiplicity" in overrides:
            raise ValueError(f"multiplicity {params.multiplicity} needs name tokens shared between entities; with "
                             "entity_tokens=1 every entity is its own token (multiplicity 1)")
        params = replace(params, multiplicity=1)
    _validate(params)
    return params


def _validate(p: GenParams) -> None:
    n = p.entities_a + p.entities_b
    if p.entities_a < 2 or p.entities_b < 2:
        raise ValueError("entities_a and entities_b must each be at least 2")
    if not 1 <= p.facts_per_entity <= p.relation_pairs:
        raise ValueError(f"facts_per_entity must be in 1..relation_pairs ({p.relation_pairs}), got {p.facts_per_entity}")
    if p.structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {', '.join(STRUCTURES)}, got {p.structure!r}")
    if p.structure == "pairing":
        if 2 * p.facts_per_entity != p.relation_pairs:
            raise ValueError(f"structure 'pairing' puts every entity in every relation pair once, so facts_per_entity "
                             f"must be relation_pairs / 2 ({p.relation_pairs} / 2), got {p.facts_per_entity}")
        if p.entities_a % 2 or p.entities_b % 2:
            raise ValueError(f"structure 'pairing' pairs the entities of each set: entities_a ({p.entities_a}) and "
                             f"entities_b ({p.entities_b}) must be even")
    if p.entity_tokens not in (1, 2):
        raise ValueError(f"entity_tokens must be 1 (one token per entity) or 2 (first and last name), got {p.entity_tokens}")
    if p.entity_tokens == 1 and p.multiplicity != 1:
        raise ValueError(f"with entity_tokens=1 every entity is its own token: multiplicity must be 1, got {p.multiplicity}")
    if p.multiplicity < 1:
        raise ValueError(f"multiplicity must be at least 1, got {p.multiplicity}")
    if p.entity_tokens == 2:
        if n % p.multiplicity:
            raise ValueError(f"entities_a + entities_b ({n}) must be a multiple of multiplicity ({p.multiplicity})")
        if n // p.multiplicity < p.multiplicity:
            raise ValueError(f"too few entities ({n}) for multiplicity {p.multiplicity}: need at least {p.multiplicity ** 2} "
                             "so that every (first, last) pair is unique")


def _names(p: GenParams, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """Name tokens (in vocab order) and each entity's token ids [n_entities, entity_tokens]:
    entities 0..entities_a-1 are set A, the rest set B."""
    n = p.entities_a + p.entities_b
    if p.entity_tokens == 1:
        # the paper's abstract vocabulary: <s_i> is the i-th entity of A, <t_j> the j-th of B
        tokens = [f"<s_{i}>" for i in range(p.entities_a)] + [f"<t_{j}>" for j in range(p.entities_b)]
        ent = np.arange(n)[:, None]
    else:
        # Entity s*k + i = (first i, last (i + shift_s) mod k): k = n / multiplicity names of each kind,
        # each first and last name used by exactly `multiplicity` entities, every pair distinct.
        k = n // p.multiplicity
        shifts = rng.choice(k, size=p.multiplicity, replace=False)
        first = np.tile(np.arange(k), p.multiplicity)
        last = (first + np.repeat(shifts, k)) % k
        tokens = [f"<f_{i}>" for i in range(k)] + [f"<l_{j}>" for j in range(k)]
        ent = np.stack([rng.permutation(k)[first], k + rng.permutation(k)[last]], axis=1)
    order = rng.permutation(len(tokens))  # names take ids 0.. in arbitrary order, as in the user's vocab
    token_id = np.empty(len(tokens), dtype=np.int64)
    token_id[order] = np.arange(len(tokens))
    vocab_names = [tokens[i] for i in order]
    ents = token_id[ent]
    if p.entity_tokens == 1:
        return vocab_names, ents  # the token names which set an entity is in: keep the order
    return vocab_names, ents[rng.permutation(n)]


def _facts(n: int, p: GenParams, rng: np.random.Generator) -> np.ndarray:
    """Facts (head, relation pair, tail) over entities 0..n-1: [n * facts_per_entity, 3].

    "shift": every entity is the head of exactly ``facts_per_entity`` facts, each under a different
    relation. "pairing": for every relation pair, a random perfect matching of the n entities, one
    fact (first of the pair, relation, second) per pair.
    """
    if p.structure == "pairing":
        pairs = [rng.permutation(n).reshape(-1, 2) for _ in range(p.relation_pairs)]
        return np.concatenate([np.stack([q[:, 0], np.full(len(q), r), q[:, 1]], axis=1) for r, q in enumerate(pairs)])
    # each entity picks facts_per_entity distinct relation pairs
    chosen = rng.random((n, p.relation_pairs)).argsort(axis=1)[:, : p.facts_per_entity]
    out = []
    for r in range(p.relation_pairs):
        heads = np.flatnonzero((chosen == r).any(axis=1))
        # tail = a fixed-point-free bijection (a cyclic shift in a random order): each entity is
        # the tail of at most one fact of this relation, and never its own tail
        order = rng.permutation(n)
        shift = int(rng.integers(1, n))
        succ = np.empty(n, dtype=np.int64)
        succ[order] = order[(np.arange(n) + shift) % n]
        out.append(np.stack([heads, np.full(len(heads), r), succ[heads]], axis=1))
    return np.concatenate(out)


def _item_json(row: np.ndarray, kind: str, p: int) -> str:
    h, r, m, t = row[:p].tolist(), int(row[p]), int(row[p + 1]), row[p + 2:].tolist()
    return json.dumps({"input_text": [h, [r], [m]], "target_text": [t], "type": kind})


def _array_json(rows: np.ndarray, kinds: list[str], p: int) -> str:
    return "[" + ", ".join(_item_json(r, k, p) for r, k in zip(rows, kinds)) + "]"


DATA_FILES = ("vocab.json", "train.json", "valid.json")


def check_out_dir(out_dir: str | Path, force: bool = False) -> None:
    """Refuse to write a dataset where it would destroy something: never into a training run's
    directory; into an existing dataset only with ``force``."""
    out = Path(out_dir)
    if (out / "config.json").is_file() or (out / "checkpoints").is_dir():
        raise FileExistsError(f"{out} is a training run directory: data is never written into one; choose another --out")
    existing = [name for name in DATA_FILES if (out / name).exists()]
    if existing and not force:
        raise FileExistsError(f"{out} already holds a dataset ({', '.join(existing)}); generating would replace it. "
                              f"Choose another --out, or pass --force (force=True) to replace it")


def generate(preset_or_params: str | GenParams | dict = "tiny", out_dir: str | Path = "data/tiny", seed: int = 0,
             force: bool = False, **overrides) -> Path:
    """Write vocab.json, train.json and valid.json into ``out_dir``; returns the directory.
    An existing dataset there is replaced only with ``force``; a run directory never is."""
    check_out_dir(out_dir, force)
    p = resolve(preset_or_params, **overrides)
    rng = np.random.default_rng(seed)
    names, ents = _names(p, rng)
    n_names = len(names)
    mask_id = n_names
    fwd_id = n_names + 1 + 2 * np.arange(p.relation_pairs)  # <r_i> = mask + 1 + 2i, <r_i_inv> = mask + 2 + 2i
    vocab_tokens = names + [MASK] + [t for i in range(p.relation_pairs) for t in (f"<r_{i}>", f"<r_{i}_inv>")] + [PAD, PRED]

    def rows(facts: np.ndarray, offset: int, reverse: bool) -> np.ndarray:
        h, r, t = facts[:, 0] + offset, facts[:, 1], facts[:, 2] + offset
        if reverse:
            h, t = t, h
        rel = fwd_id[r] + (1 if reverse else 0)
        return np.concatenate([ents[h], rel[:, None], np.full((len(r), 1), mask_id), ents[t]], axis=1)

    facts_a = _facts(p.entities_a, p, rng)
    facts_b = _facts(p.entities_b, p, rng)
    off_b = p.entities_a
    train_rows = np.concatenate([rows(facts_a, 0, False), rows(facts_a, 0, True)])
    train_rows = train_rows[rng.permutation(len(train_rows))]
    flip = rng.random(len(facts_b)) < 0.5  # which direction of each B fact is seen
    fwd_b, rev_b = rows(facts_b, off_b, False), rows(facts_b, off_b, True)
    atomic_rows = np.where(flip[:, None], rev_b, fwd_b)
    test_rows = np.where(flip[:, None], fwd_b, rev_b)
    perm = rng.permutation(len(facts_b))
    atomic_rows, test_rows = atomic_rows[perm], test_rows[perm]

    def sample(a: np.ndarray) -> np.ndarray:
        k = min(p.valid_per_split, len(a))
        return a[np.sort(rng.choice(len(a), size=k, replace=False))]

    valid = {"train": sample(train_rows), "atomic": sample(atomic_rows), "test": sample(test_rows)}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pl = p.entity_tokens
    train_text = _array_json(np.concatenate([train_rows, atomic_rows]),
                             ["train"] * len(train_rows) + ["atomic"] * len(atomic_rows), pl)
    valid_text = "{" + ", ".join(f'"{s}": ' + _array_json(a, [s] * len(a), pl) for s, a in valid.items()) + "}"
    # vocab last: a directory with a vocab.json is a complete one
    atomic_write_bytes(out / "train.json", train_text.encode())
    atomic_write_bytes(out / "valid.json", valid_text.encode())
    atomic_write_bytes(out / "vocab.json", json.dumps({t: i for i, t in enumerate(vocab_tokens)}).encode())
    atomic_write_bytes(out / "generator.json", json.dumps({"params": asdict(p), "seed": seed}, indent=2).encode())
    return out


def ensure_data(data_dir: str | Path, preset: str | None = None, seed: int = 0) -> Path:
    """``data_dir`` if it holds a dataset; otherwise generate one there first, so a notebook runs
    on a fresh checkout. The generator preset is ``preset``, or the folder's name when that is a
    preset (``data/tiny`` -> "tiny"); any other missing folder is an error. Never overwrites."""
    data_dir = Path(data_dir)
    if (data_dir / "vocab.json").exists():
        return data_dir
    preset = preset or (data_dir.name if data_dir.name in PRESETS else None)
    if preset is None:
        raise FileNotFoundError(f"{data_dir}: no dataset (vocab.json, train.json, valid.json) there; generate one with "
                                f"`jepa-kit data generate --preset tiny --out {data_dir}`, or name the folder after a "
                                f"preset ({', '.join(PRESETS)}) to have it generated")
    print(f"{data_dir}: no dataset yet, generating the {preset!r} preset (seed {seed})")
    generate(preset, data_dir, seed=seed)
    return data_dir
