"""Loading the user's data directory (vocab.json, train.json, valid.json) into compact tensors.

One item ``{"input_text": [[h_f, h_l], [r], [mask]], "target_text": [[t_f, t_l]], "type": ...}``
becomes one row ``[h_f, h_l, r, <mask>, t_f, t_l]`` of an ``ids`` tensor. Entity patches may
also be one token long (the abstract setting, rows ``[h, r, <mask>, t]``, as the binding paper's
``inversionid.*`` data: entity tokens ``<s_i>``/``<t_j>``, no ``<PRED>``); every row of a dataset
has the same length.

Everything is validated: a malformed item is reported by file, split, index and what is wrong.
Parsed tensors are cached beside the data, keyed by a hash of the three files; the cache stores
that hash and is used only when it matches, and an unreadable cache is parsed again and replaced.
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import torch

from jepa_kit.files import atomic_write_bytes, read_json
from jepa_kit.vocab import Vocab, VocabError

SPLITS = ("train", "atomic", "test")  # valid.json's splits, and the item types
TYPE_CODES = {name: code for code, name in enumerate(SPLITS)}  # train 0, atomic 1, test 2
# 2: JSON booleans in id slots are refused (version 1 caches may hold them as 0/1);
# 3: the cache holds the fingerprint of the files it was parsed from, and is used only for them
CACHE_VERSION = 3
# The arrays a cache holds, beside its cache_version and fingerprint.
_CACHED = ("train_ids", "train_types", *(f"valid_{s}_{k}" for s in SPLITS for k in ("ids", "types")))


class DataError(ValueError):
    """A data file that does not follow the data contract."""


@dataclass
class Split:
    ids: torch.Tensor    # [N, L] long, L = 2 * patch_len + 2
    types: torch.Tensor  # [N] int8, codes of TYPE_CODES

    def __len__(self) -> int:
        return len(self.ids)

    def of_type(self, name: str) -> "Split":
        keep = is_type(self.types, name)
        return Split(self.ids[keep], self.types[keep])


def is_type(types: torch.Tensor, name: str) -> torch.Tensor:
    """Which rows are items of type ``name`` ("train", "atomic" or "test"): bool, the shape of ``types``."""
    if name not in TYPE_CODES:
        raise ValueError(f"unknown item type {name!r}, expected one of {', '.join(TYPE_CODES)}")
    return types == TYPE_CODES[name]


@dataclass
class Dataset:
    vocab: Vocab
    train: Split                 # all of train.json
    valid: dict[str, Split]      # valid.json: "train", "atomic", "test"
    path: str
    fingerprint: str             # hash of the three files' bytes
    patch_len: int = 2           # tokens per entity: 2 (first, last name) or 1 (the abstract setting)
    _entities: torch.Tensor | None = field(default=None, repr=False)

    @property
    def entity_tokens(self) -> int:
        """Tokens per entity (the generator's name for ``patch_len``): 1 or 2."""
        return self.patch_len

    def entities(self) -> torch.Tensor:
        """Every distinct entity (its name tokens) in train.json and valid.json: [E, patch_len], sorted."""
        if self._entities is None:
            p = self.patch_len
            rows = torch.cat([self.train.ids] + [s.ids for s in self.valid.values()])
            names = torch.cat([rows[:, :p], rows[:, -p:]])
            self._entities = torch.unique(names, dim=0)
        return self._entities

    def summary(self) -> dict:
        return summarize(self)


# -- parsing ------------------------------------------------------------------------------

def _explain(item, where: str, patch_len: int | None) -> str:
    """Why one item does not parse (slow path, only called after the fast path failed)."""
    if not isinstance(item, dict):
        return f"{where} is a {type(item).__name__}, expected an object with input_text, target_text, type"
    for key in ("input_text", "target_text", "type"):
        if key not in item:
            return f"{where} has no {key!r}"
    inp, tgt = item["input_text"], item["target_text"]
    if not isinstance(inp, list) or len(inp) != 3:
        return f"{where} has an input_text of {len(inp) if isinstance(inp, list) else type(inp).__name__} patches, expected 3 ([head], [relation], [mask])"
    if not isinstance(tgt, list) or len(tgt) != 1:
        return f"{where} has a target_text of {len(tgt) if isinstance(tgt, list) else type(tgt).__name__} patches, expected 1"
    for name, patch in (("head", inp[0]), ("relation", inp[1]), ("mask", inp[2]), ("target", tgt[0])):
        if not isinstance(patch, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in patch):
            return f"{where} has a {name} patch that is not a list of integer ids: {patch!r}"
    want = patch_len or len(inp[0])
    if len(inp[0]) not in (1, 2) or len(inp[0]) != want:
        return f"{where} has a head of {len(inp[0])} tokens, expected {want}"
    if len(tgt[0]) != want:
        return f"{where} has a target of {len(tgt[0])} tokens, expected {want}"
    if len(inp[1]) != 1:
        return f"{where} has a relation patch of {len(inp[1])} tokens, expected 1"
    if len(inp[2]) != 1:
        return f"{where} has a mask patch of {len(inp[2])} tokens, expected 1"
    if not isinstance(item["type"], str):
        return f"{where} has a type {item['type']!r}, expected a string"
    return f"{where} is malformed"


def _parse_items(items, where: str, patch_len: int | None) -> tuple[np.ndarray, list[str], int]:
    """Items -> (ids [N, L] int64, type names, patch_len). Fast path first, exact message on failure."""
    if not isinstance(items, list):
        raise DataError(f"{where}: expected a JSON array of items, got {type(items).__name__}")
    if not items:
        raise DataError(f"{where}: no items")
    if patch_len is None:
        try:
            patch_len = len(items[0]["input_text"][0])
        except (TypeError, KeyError, IndexError):
            raise DataError(_explain(items[0], f"{where}: item 0", None)) from None
        if patch_len not in (1, 2):
            raise DataError(f"{where}: item 0 has a head of {patch_len} tokens, expected 1 (one token per entity) "
                            "or 2 (first and last name)")
    rows, types = [], []
    for i, it in enumerate(items):
        try:
            (h, r, m), (t,) = it["input_text"], it["target_text"]
            if len(h) != patch_len or len(t) != patch_len or len(r) != 1 or len(m) != 1:
                raise ValueError
            rows.append((*h, *r, *m, *t))
            types.append(it["type"])
        except (TypeError, KeyError, ValueError):
            raise DataError(_explain(it, f"{where}: item {i}", patch_len)) from None
    try:
        ids = np.array(rows)  # no dtype: a string or float id must not be silently converted
    except (TypeError, ValueError, OverflowError):
        ids = None
    # numpy would read a JSON true/false among the ids as 1/0: look for booleans (one pass in C, ~2 % of the parse)
    if ids is None or ids.dtype.kind != "i" or ids.ndim != 2 or bool in set(map(type, chain.from_iterable(rows))):
        bad = next((i for i, row in enumerate(rows)
                    if not all(isinstance(x, int) and not isinstance(x, bool) for x in row)), None)
        if bad is not None:
            raise DataError(_explain(items[bad], f"{where}: item {bad}", patch_len))
        bad = next(i for i, row in enumerate(rows) if not all(-2**63 <= x < 2**63 for x in row))
        raise DataError(f"{where}: item {bad} has an id outside the vocabulary: {rows[bad]}")
    ids = ids.astype(np.int64, copy=False)
    return ids, types, patch_len


def _check_ids(ids: np.ndarray, types: list[str], vocab: Vocab, where: str, allowed: tuple[str, ...]) -> np.ndarray:
    """Validate ids against the vocabulary, return type codes [N] int8."""
    n_tok = len(vocab)
    p = (ids.shape[1] - 2) // 2
    out = np.flatnonzero(((ids < 0) | (ids >= n_tok)).any(axis=1))
    if len(out):
        i = int(out[0])
        bad = int(ids[i][(ids[i] < 0) | (ids[i] >= n_tok)][0])
        raise DataError(f"{where}: item {i} has id {bad}, outside the vocabulary (0..{n_tok - 1})")
    rel = ids[:, p]
    not_rel = np.flatnonzero(vocab.inverse.numpy()[rel] < 0)
    if len(not_rel):
        i = int(not_rel[0])
        raise DataError(f"{where}: item {i} has {vocab.tokens[rel[i]]!r} (id {rel[i]}) in the relation slot, expected a relation token")
    not_mask = np.flatnonzero(ids[:, p + 1] != vocab.mask_id)
    if len(not_mask):
        i = int(not_mask[0])
        tok = ids[i, p + 1]
        raise DataError(f"{where}: item {i} has {vocab.tokens[tok]!r} (id {tok}) in the mask slot, expected '<mask>' (id {vocab.mask_id})")
    is_name = vocab.is_name.numpy()
    if is_name.any():
        name_slots = np.concatenate([ids[:, :p], ids[:, -p:]], axis=1)
        bad_rows = np.flatnonzero(~is_name[name_slots].all(axis=1))
        if len(bad_rows):
            i = int(bad_rows[0])
            tok = next(t for t in name_slots[i] if not is_name[t])
            raise DataError(f"{where}: item {i} has {vocab.tokens[tok]!r} (id {tok}) in an entity slot, expected a name token")
    codes = np.empty(len(types), dtype=np.int8)
    for name in set(types):
        if name not in allowed:
            i = types.index(name)
            raise DataError(f"{where}: item {i} has type {name!r}, expected one of {', '.join(allowed)}")
    lookup = {name: TYPE_CODES[name] for name in allowed}
    codes[:] = [lookup[t] for t in types]
    return codes


def _parse_dir(root: Path, vocab: Vocab) -> tuple[dict[str, np.ndarray], int]:
    arrays: dict[str, np.ndarray] = {}
    train_path = root / "train.json"
    ids, types, p = _parse_items(read_json(train_path, DataError), str(train_path), None)
    arrays["train_ids"] = ids
    arrays["train_types"] = _check_ids(ids, types, vocab, str(train_path), ("train", "atomic"))
    valid_path = root / "valid.json"
    valid = read_json(valid_path, DataError)
    if not isinstance(valid, dict):
        raise DataError(f"{valid_path}: expected a JSON object with splits {', '.join(SPLITS)}, got {type(valid).__name__}")
    for split in SPLITS:
        if split not in valid:
            raise DataError(f"{valid_path}: missing split {split!r} (has: {', '.join(valid) or 'nothing'})")
        where = f"{valid_path}: split {split!r}"
        ids, types, _ = _parse_items(valid[split], where, p)
        arrays[f"valid_{split}_ids"] = ids
        arrays[f"valid_{split}_types"] = _check_ids(ids, types, vocab, where, (split,))
    return arrays, p


# -- cache --------------------------------------------------------------------------------

def fingerprint(root: str | Path) -> str:
    h = hashlib.sha256()
    for name in ("vocab.json", "train.json", "valid.json"):
        path = Path(root) / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        h.update(name.encode() + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()[:32]


def _cache_dir(root: Path) -> Path:
    """Beside the data when writable; otherwise (e.g. a read-only shared dataset) the user cache."""
    here = root / ".jepa_cache"
    # Check the mode bits too: root passes os.access on a read-only directory.
    if os.access(root, os.W_OK) and os.stat(root).st_mode & stat.S_IWUSR:
        return here
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jepa_kit"


def _load_cache(path: Path, fp: str) -> dict[str, np.ndarray] | None:
    """The arrays cached for the data with fingerprint ``fp``; None (a miss) when the file is absent
    or unreadable, of another cache version, parsed from other data (a cache file copied over this
    one), or not the names, dtypes and shapes a parse gives."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["cache_version"]) != CACHE_VERSION or str(z["fingerprint"]) != fp:
                return None
            arrays = {k: z[k] for k in _CACHED}
    except Exception:
        # Truncated, empty, not a zip, a bad CRC, a lone .npy, a pickle: numpy and zipfile raise
        # BadZipFile, EOFError, TypeError, ValueError, OSError and more. A broken cache is a miss.
        return None
    return arrays if _parse_shaped(arrays) else None


def _parse_shaped(arrays: dict[str, np.ndarray]) -> bool:
    """Whether ``arrays`` have the dtypes and shapes ``_parse_dir`` gives: every ids [N, L] int64 with
    one L = 2 * patch_len + 2 (4 or 6), its types [N] int8."""
    widths = set()
    for prefix in ("train", *(f"valid_{s}" for s in SPLITS)):
        ids, types = arrays[f"{prefix}_ids"], arrays[f"{prefix}_types"]
        if ids.dtype != np.int64 or ids.ndim != 2 or types.dtype != np.int8 or types.shape != (len(ids),):
            return False
        widths.add(ids.shape[1])
    return widths in ({4}, {6})


def _save_cache(path: Path, arrays: dict[str, np.ndarray], fp: str) -> None:
    import io
    buf = io.BytesIO()
    np.savez(buf, cache_version=np.array(CACHE_VERSION), fingerprint=np.array(fp), **arrays)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError:
        pass  # caching is an optimisation; a full or read-only disk must not stop the load


# -- public -------------------------------------------------------------------------------

def load_dataset(root: str | Path, cache: bool = True) -> Dataset:
    """Load and validate a data directory. Raises DataError naming the file and item on bad input."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data directory not found")
    try:
        vocab = Vocab.load(root / "vocab.json")
    except VocabError as e:
        raise DataError(str(e)) from None
    fp = fingerprint(root)
    # The name finds the cache, the fingerprint stored inside proves it: a cache file of other data
    # copied to this name is a miss, parsed again and replaced.
    cache_path = _cache_dir(root) / f"{fp}.npz"
    arrays = _load_cache(cache_path, fp) if cache else None
    if arrays is None:
        arrays, _ = _parse_dir(root, vocab)
        if cache:
            _save_cache(cache_path, arrays, fp)
    p = (arrays["train_ids"].shape[1] - 2) // 2

    def split(prefix: str) -> Split:
        return Split(torch.from_numpy(arrays[f"{prefix}_ids"]), torch.from_numpy(arrays[f"{prefix}_types"]))

    return Dataset(
        vocab=vocab,
        train=split("train"),
        valid={s: split(f"valid_{s}") for s in SPLITS},
        path=str(root),
        fingerprint=fp,
        patch_len=p,
    )


def row_set(ids: torch.Tensor) -> set[tuple[int, ...]]:
    return set(map(tuple, ids.tolist()))


def _row_keys(ids: torch.Tensor) -> torch.Tensor:
    """One int64 per row (a wrapping polynomial hash: equal rows, equal keys; collisions re-checked)."""
    keys = torch.zeros(len(ids), dtype=torch.long)
    for c in range(ids.shape[1]):
        keys = keys * 1_000_003 + ids[:, c].long()
    return keys


def rows_in(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Which rows of ``a`` [N, L] equal some row of ``b`` [M, L]: bool [N]. Exact, vectorised hashing first."""
    found = torch.zeros(len(a), dtype=torch.bool)
    if len(a) == 0 or len(b) == 0:
        return found
    a, b = a.cpu(), b.cpu()
    ka, kb = _row_keys(a), _row_keys(b)
    candidates = torch.isin(ka, kb).nonzero().flatten()
    if len(candidates):
        exact = row_set(b[torch.isin(kb, ka[candidates])])
        for i, row in zip(candidates.tolist(), a[candidates].tolist()):
            found[i] = tuple(row) in exact
    return found


def first_match(row: torch.Tensor, b: torch.Tensor) -> int:
    """Index of the first row of ``b`` equal to ``row`` (which must be there)."""
    return int((b.cpu() == row.cpu()).all(dim=1).nonzero()[0])


def leakage_problems(ids: torch.Tensor, types: torch.Tensor, test: torch.Tensor, vocab, where: str = "train.json",
                     limit: int | None = None) -> list[str]:
    """Every way training rows ``ids`` [N, L] (with ``types``) would show a model a held-out fact.

    One rule for `jepa-kit data check` and the training guard, covering every sequence an objective
    feeds the model: (1) a row that is a valid.json test item; (2) the reverse view of a ``train``
    row (the JEPA objective feeds it) that is a test item; (3) a row that is the reverse of an atomic
    row (the held-out direction of an atomic fact). One message per offending row, naming it, at
    most ``limit`` of them per kind (None: all)."""
    from jepa_kit.reversal import reverse_view

    def show(row) -> str:
        return " ".join(vocab.decode(row))

    def first(hits):
        hits = hits.tolist()
        return hits if limit is None else hits[:limit]

    problems = []
    for i in first(rows_in(ids, test).nonzero().flatten()):
        problems.append(f"valid.json test item {first_match(ids[i], test)} appears in {where} "
                        f"(item {i}: {show(ids[i])})")
    train_index = is_type(types, "train").nonzero().flatten()
    reversed_train = reverse_view(ids[train_index], vocab)
    for h in first(rows_in(reversed_train, test).nonzero().flatten()):
        i = int(train_index[h])
        problems.append(f"valid.json test item {first_match(reversed_train[h], test)} is the reverse view of "
                        f"'train' item {i} of {where} ({show(ids[i])}), which the JEPA objective feeds to the model")
    atomic_index = is_type(types, "atomic").nonzero().flatten()
    reversed_atomic = reverse_view(ids[atomic_index], vocab)
    for i in first(rows_in(ids, reversed_atomic).nonzero().flatten()):
        j = int(atomic_index[first_match(ids[i], reversed_atomic)])
        problems.append(f"{where}: item {i} ({show(ids[i])}) is the reverse view of atomic item {j}: "
                        f"the held-out direction of an atomic fact")
    return problems


def summarize(ds: Dataset) -> dict:
    """Counts, name sharing and the leakage check, as shown by `jepa-kit data check`."""
    from jepa_kit.reversal import reverse_view

    p, vocab = ds.patch_len, ds.vocab
    counts = {"train.json": {name: int(is_type(ds.train.types, name).sum()) for name in ("train", "atomic")}}
    counts["valid.json"] = {s: len(ds.valid[s]) for s in SPLITS}
    rel_counts = {}
    for s, split in [("train.json", ds.train)] + [(f"valid.{k}", v) for k, v in ds.valid.items()]:
        r, n = torch.unique(split.ids[:, p], return_counts=True)
        rel_counts[s] = {vocab.tokens[i]: int(c) for i, c in zip(r.tolist(), n.tolist())}
    ents = ds.entities()
    sharing = {}
    for j, label in enumerate(["first", "last"] if p == 2 else ["entity"]):
        _, c = torch.unique(ents[:, j], return_counts=True)
        sharing[label] = {"tokens": len(c), "entities_per_token_min": int(c.min()), "entities_per_token_max": int(c.max())}

    test = ds.valid["test"].ids
    problems = leakage_problems(ds.train.ids, ds.train.types, test, vocab)
    rev_atomic = reverse_view(ds.train.of_type("atomic").ids, vocab)
    # Not a leak, but worth a word: on an excerpt of a dataset this is expected.
    not_held_out = int((~rows_in(test, rev_atomic)).sum())
    warnings = []
    if not_held_out:
        warnings.append(f"{not_held_out} of {len(test)} valid.json test items are not the reverse of an atomic item in train.json")
    return {
        "path": ds.path,
        "vocab_size": len(vocab),
        "pred_appended": vocab.pred_appended,
        "relation_pairs": vocab.n_relation_pairs,
        "patch_len": p,
        "entity_tokens": p,
        "counts": counts,
        "relations": rel_counts,
        "entities": len(ents),
        "name_sharing": sharing,
        "leakage_problems": problems,
        "warnings": warnings,
        "fingerprint": ds.fingerprint,
    }
