"""INTERFACE SPEC from the lead (replace this file with the implementation; keep this interface).

## Common context (read first)
- Project: /work/main (git repo, Python package `jepa_kit`). Read /work/shared/DESIGN.md and /work/shared/STYLE.md first; real data fixtures in /work/shared/fixtures/osu_reversal_comb10_excerpt (read-only; copy before modifying in tests).
- A virtualenv is ready: use /work/main/.venv/bin/python (torch 2.13.0 CPU, transformers 5.24.0, pytest, papermill, plotly, pandas, safetensors, ipywidgets installed). Run the package with `cd /work/main && .venv/bin/python -m pytest tests/test_X.py -q`. `pip install -e .` may not have been done yet: if `import jepa_kit` fails, run `.venv/bin/pip install -q --no-deps -e .` once.
- Machine: 2 CPU cores, no GPU, no internet (no HF hub downloads: build GPT-2 from `GPT2Config`).
- Several engineers work in this same tree at once, each on their own files. Only create/edit the files assigned to you. Do NOT run `git commit`, `git add`, `git stash`, `git checkout` or anything that changes git state; the lead commits. Do not reformat other people's files.
- Already present: `jepa_kit/vocab.py` (class `Vocab`: `Vocab.load(path_or_dir)`, `Vocab.build(n_first, n_last, n_relation_pairs)`, `len(v)`, `v.mask_id`, `v.pad_id`, `v.pred_id`, `v.inverse` (LongTensor [V]: relation id -> inverse relation id, -1 for non-relations), `v.forward_relation_ids`, `v.inverse_relation_ids`, `v.relation_ids`, `v.is_relation(ids)`, `v.first_name_ids`, `v.last_name_ids`, `v.is_name` (bool [V]), `v.decode(ids)`, `v.tokens`, `v[token_str]`).
- Being written by the lead right now (lands within ~20 min), `jepa_kit/data.py`: `TYPE_CODES = {"train": 0, "atomic": 1, "test": 2}`; `Split` dataclass with `.ids` LongTensor [N, L] (L = 2*patch_len + 2, normally 6: `[h_f, h_l, r, <mask>, t_f, t_l]`) and `.types` int8 tensor [N]; `Dataset` with `.vocab`, `.train: Split` (all of train.json), `.valid: dict[str, Split]` (keys "train", "atomic", "test"), `.patch_len` (2 normally; 1 for single-token entities, then rows are `[h, r, <mask>, t]`), `.path`, `.entities()` -> LongTensor [E, patch_len] of every distinct entity (name tuple) in train.json ∪ valid.json; `load_dataset(dir) -> Dataset`. And `jepa_kit/datagen.py`: `generate(preset_or_params, out_dir, seed=0)` with presets "tiny", "small", "paper" writing vocab.json/train.json/valid.json. Until they land, build test inputs from the fixture vocab and random ids.
- Style: small readable modules (nanoGPT-like), dataclass configs, short "why" comments, shapes in comments where not obvious, clear error messages that name the file/item. Tests must assert behaviour that could fail; keep your tests fast (your whole test file well under 60 s on 2 cores): tiny models (e.g. 2 layers, 32-64 wide).
- Packed/JEPA facts (DESIGN.md "Known traps"): use an additive float mask (0 allowed, torch.finfo(dtype).min blocked), never a boolean 4D mask with GPT-2 eager; SDPA needs the mask to carry causality; restart position ids at 0 for the reverse block; never rely on attention_mask=None inference of packed sequences.
- When done, reply with: the files you created, the public API (signatures), how to run your tests, and any numbers you measured (with the command). Be concise.

## Agreed model interface (jepa_kit/model.py, owned by the "model" engineer; the "train" engineer codes against it)
```python
from jepa_kit.model import GPT2WithJEPA, ObjectiveConfig, MODEL_PRESETS
MODEL_PRESETS: dict[str, dict]   # "paper": n_layer=4, n_embd=768, n_head=12; "tiny": small CPU model (e.g. 2 layers, 128 wide, 4 heads; tuned later)

@dataclass
class ObjectiveConfig:           # the ONLY place these defaults are written; TrainConfig reuses them
    objective: str = "jepa"      # "jepa" | "ntp" | "reverse_aug"  (ntp and reverse_aug: plain NTP, no reverse views built at all)
    k_pred: int = 1              # number of <PRED> tokens appended to F, 0..4
    lambda_jepa: float = 1.0
    gamma_ntp: float = 1.0
    jepa_metric: str = "cosine"  # cosine | l2 | mse | infonce
    infonce_temperature: float = 0.1
    loss_dropout: float = 0.0    # fraction of JEPA items whose JEPA term is skipped (seeded via the generator passed to forward)
    stop_grad: bool = False      # detach the target (R) side
    mode: str = "packed"         # "packed" (one pass) | "two_pass" (seed structure, reference)

class GPT2WithJEPA(torch.nn.Module):
    def __init__(self, vocab: Vocab, preset: str | dict = "tiny", objective: ObjectiveConfig | None = None,
                 attn_implementation: str = "sdpa", n_positions: int = 32): ...
    gpt2: transformers.GPT2LMHeadModel      # the wrapped HF model (evaluation uses it directly)
    def forward(self, ids: LongTensor[B, L], types: Tensor[B], generator: torch.Generator | None = None,
                return_jepa_outputs: bool = False) -> dict:
        # keys: "loss" (γ·ntp + λ·jepa, scalar tensor), "ntp_loss" (mean CE over the labelled target tokens),
        # "jepa_loss" (scalar tensor, 0 when no JEPA rows), "n_items" (int), "n_jepa" (int, rows that got a reverse view);
        # with return_jepa_outputs=True also "pred" [n_jepa, D] and "target" [n_jepa, D] (last-layer hidden states).
        # Reverse views are built ONLY for rows with types == 0 ("train") and only when objective == "jepa" and λ > 0.
    def config_dict(self) -> dict     # JSON-serialisable, enough to rebuild (sizes, objective fields, attn impl, n_positions, vocab size)
    @classmethod
    def from_config_dict(cls, vocab: Vocab, d: dict) -> "GPT2WithJEPA"
```
NTP labels are the tail patch tokens only (`ids[:, -patch_len:]`), predicted from the position before each.
"""
