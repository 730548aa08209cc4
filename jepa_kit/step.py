"""One optimizer step, as the trainer runs it and ``jepa-kit bench`` times it.

* ``weight_decay_groups``: AdamW's parameter groups.
* ``train_step``: forward (under autocast), backward, gradient clipping, update.
* ``TrainerStep``: the step the trainer calls, with its learning rate: plain, or (``step_graph``)
  captured once as a CUDA graph and replayed (``runtime.GraphedStep``); ``check_step_graph`` says
  when a captured step would compute what the plain one does.
"""
from __future__ import annotations

import torch

from jepa_kit.config import ConfigError
from jepa_kit.runtime import GraphedStep


def weight_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices and embeddings, none on biases and layer norms."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_step(fwd, model, opt, scaler, ids, types, *, autocast_dtype=None, grad_clip: float = 0.0,
               generator=None, global_loss=None):
    """One optimizer step: forward (under autocast when ``autocast_dtype`` is set), backward,
    gradient clipping, update. What ``train`` runs every step and ``jepa-kit bench`` times.

    ``fwd`` is the model or its compiled/DDP wrapper; ``global_loss(out)`` returns a tuple whose
    first element is the loss to backpropagate (default: ``(out["loss"],)``). Nothing here reads
    a value back to the host: with fixed shapes (mode static) and bf16 a step never waits.
    Returns (``global_loss(out)``, the gradient norm tensor or None)."""
    with torch.autocast(ids.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        out = fwd(ids, types, generator=generator)
    res = global_loss(out) if global_loss is not None else (out["loss"],)
    scaler.scale(res[0]).backward()
    norm = None
    if grad_clip > 0:
        scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(opt)  # with fp16: skipped when the gradients hold inf/NaN (the scaler then shrinks)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    return res, norm


def check_step_graph(model, device: torch.device, world: int, precision: str, loss_dropout: float) -> None:
    """Raise ConfigError unless a step captured once and replayed computes what the plain step does:
    a CUDA device, one process, no fp16 scaler (it reads the gradients' finiteness back), no loss
    dropout (a new generator every step), and the GPT-2 objectives in mode static (no shape in the
    step depends on the batch's mix of items)."""
    from jepa_kit.model import GPT2WithJEPA

    mode = getattr(getattr(model, "objective", None), "mode", None)
    problems = [why for bad, why in (
        (device.type != "cuda", f"a CUDA device (this run is on {device.type})"),
        (world > 1, "a single process (not torchrun)"),
        (precision == "fp16", "bf16 or fp32 (the fp16 scaler reads values back every step)"),
        (loss_dropout > 0, "loss_dropout 0 (its draws take a new generator every step)"),
        (not isinstance(model, GPT2WithJEPA) or mode not in ("static", "auto"),
         f"an objective on GPT-2 in mode static or auto (this run: {type(model).__name__}, mode {mode})"),
    ) if bad]
    if problems:
        raise ConfigError("step_graph needs " + "; ".join(problems))


class TrainerStep:
    """``step(ids, types, generator)`` -> ``train_step``'s result, with ``set_lr`` before each step.

    Plain: the learning rate is a float in every parameter group. Graphed (``graph=True``): one
    device tensor shared by the groups and updated in place, the optimizer capturable, the step
    captured after ``GraphedStep``'s warm-up calls; its outputs are the graph's tensors, overwritten
    by the next step. ``loss_fn`` is read when the step is captured: a value it reads from the host
    (the trainer's stop flag) is frozen there, so the caller reads such values itself."""

    def __init__(self, fwd, model, opt, scaler, *, autocast_dtype, grad_clip: float, loss_fn, graph: bool = False,
                 graph_factory=None, capture=None):
        self.fwd, self.model, self.opt, self.scaler = fwd, model, opt, scaler
        self.autocast_dtype, self.grad_clip, self.loss_fn = autocast_dtype, grad_clip, loss_fn
        self.graphed = GraphedStep(self._plain, graph_factory=graph_factory, capture=capture) if graph else None
        self.lr = None
        for group in opt.param_groups:  # a resumed optimizer carries the flag of the run that saved it
            group["capturable"] = graph
        if graph:
            device = next(model.parameters()).device
            self.lr = torch.tensor(float(opt.param_groups[0]["lr"]), dtype=torch.float32, device=device)
            for group in opt.param_groups:
                group["lr"] = self.lr

    def set_lr(self, lr: float) -> None:
        if self.lr is not None:
            self.lr.fill_(lr)  # queued on the device: the captured update reads it
        else:
            for group in self.opt.param_groups:
                group["lr"] = lr

    def _plain(self, ids, types, generator=None):
        return train_step(self.fwd, self.model, self.opt, self.scaler, ids, types, autocast_dtype=self.autocast_dtype,
                          grad_clip=self.grad_clip, generator=generator, global_loss=self.loss_fn)

    def __call__(self, ids, types, generator=None):
        if self.graphed is not None:
            return self.graphed(ids, types)  # check_step_graph: no generator in a graphed run
        return self._plain(ids, types, generator)
