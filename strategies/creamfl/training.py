"""The CreamFL server model's own optimisation: InfoNCE on its pairs and distillation toward the ensemble."""

from __future__ import annotations

import copy
from typing import Any

import torch

from data.captioned import PairedSplit
from models.accel import autocast, make_optimizer, to_device_batch
from models.multimodal import ImageTextModel
from strategies.base import derive_seed
from strategies.creamfl.config import CreamFLConfig
from strategies.creamfl.losses import crossmodal_kd_loss, info_nce, relational_kd_loss, squared_distance
from strategies.creamfl.models import batches
from strategies.creamfl.protocol import MODALITY_KEYS

Targets = dict[str, torch.Tensor]


class ServerTraining:
    """The server model, its two optimizers and its two kinds of steps (no Flower here).

    The public InfoNCE steps use AdamW. The separate distillation steps (distill_mode: separate)
    use their own plain SGD, without momentum or weight decay, so they move the weights only by
    distill_lr * kd_weight * the distillation gradient: nothing of the public steps' Adam moments
    is replayed (sharing the AdamW made every distillation step a stale first-moment step of
    public-step size, whatever the targets and kd_weight), kd_weight scales every step linearly,
    and kd_weight 0 leaves the server exactly as training alone.
    """

    def __init__(self, model: ImageTextModel, *, config: CreamFLConfig, device: torch.device,
                 public: PairedSplit, train_pairs: PairedSplit, run_seed: int) -> None:
        self.model, self.config, self.device = model, config, device
        self.public, self.train_pairs, self.run_seed = public, train_pairs, run_seed
        self.optimizer = make_optimizer("adamw", model.parameters(), config.server_lr, 0.0,
                                        config.server_weight_decay, device)
        # Stateless: nothing to carry between steps or rounds, nothing shared with the AdamW.
        self.distill_optimizer = torch.optim.SGD(model.parameters(), lr=config.distill_lr)

    def _seed(self, server_round: int, purpose: str) -> torch.Generator:
        return torch.Generator().manual_seed(derive_seed(self.run_seed, server_round, purpose))

    def state_dict(self) -> dict[str, Any]:
        # A copy: on the CPU the optimizer's state_dict aliases the live tensors.
        return {"optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])

    def public_step(self, server_round: int, joint: Targets) -> float:
        """`server_epochs` of symmetric InfoNCE on the server's pairs, plus the distillation term
        toward `joint` targets on their public items (distill_mode: joint; empty otherwise)."""
        model, dev, pairs, cfg = self.model, self.device, self.train_pairs, self.config
        n_public = len(self.public)
        model.train()
        total, steps = 0.0, 0
        gen = self._seed(server_round, "creamfl-public")
        for _ in range(cfg.server_epochs):
            for idx in batches(len(pairs), cfg.server_batch_size, gen):
                if len(idx) < 2:
                    continue
                with autocast(dev):
                    zi = model.encode_image(to_device_batch(pairs.images[idx], dev))
                    zt = model.encode_text(pairs.tokens[idx].to(dev))
                loss = info_nce(zi, zt, cfg.temperature)
                if joint:  # public items are the first n_public of the server's pairs
                    pub = idx < n_public
                    if pub.any():
                        loss = loss + self.kd_loss({"img": zi[pub], "txt": zt[pub]}, idx[pub], joint)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += float(loss.detach())
                steps += 1
        return total / max(steps, 1)

    def kd_loss(self, reps: dict[str, torch.Tensor], idx: torch.Tensor, targets: Targets) -> torch.Tensor:
        """kd_weight * the distillation term of each modality (once each), gated per config.

        `mse` (published): the squared distance to the aggregated reps, summed over the embedding
        and averaged over items (in [0, 4] for unit vectors: a per-item loss on InfoNCE's scale,
        not an element mean that is embed_dim times smaller). `relational`: KL to the clients'
        (ensemble-weighted) in-batch similarity structure (losses.relational_kd_loss)."""
        cfg = self.config
        loss = torch.zeros((), device=self.device)
        if "distil" in targets:  # held-out public items are never targets
            sel = targets["distil"][idx]
            idx, reps = idx[sel], {k: v[sel.to(v.device)] for k, v in reps.items()}
        if cfg.kd_loss == "crossmodal":
            if "cross_img" not in targets or len(idx) < 2 or not {"img", "txt"} <= set(reps):
                return loss
            return cfg.kd_weight * crossmodal_kd_loss(
                reps["img"], reps["txt"], targets["cross_img"][:, idx].to(self.device),
                targets["cross_txt"][:, idx].to(self.device), cfg.relational_temperature)
        for key in MODALITY_KEYS:
            if key not in targets or key not in reps or len(idx) == 0:
                continue
            z = reps[key]
            scale = float(targets[f"scale_{key}"]) if f"scale_{key}" in targets else 1.0
            if cfg.kd_loss == "relational":
                if len(idx) < 3:
                    continue
                stack = targets[f"stack_{key}"][:, idx].to(self.device)
                weights = targets.get(f"w_{key}")
                term = relational_kd_loss(z, stack, cfg.relational_temperature,
                                          None if weights is None else weights[:, idx].to(self.device))
            else:
                t = targets[key][idx].to(self.device)
                mask = targets.get(f"mask_{key}")
                if mask is not None:
                    keep = mask[idx].to(self.device)
                    if not keep.any():
                        continue
                    z, t = z[keep], t[keep]
                term = squared_distance(z, t)
            loss = loss + cfg.kd_weight * scale * term
        return loss

    def distill(self, server_round: int, targets: Targets) -> float:
        """`distill_epochs` of SGD steps (distill_lr) on the distillation loss toward the aggregated
        reps over the public set; kd_weight 0 takes none."""
        keys = list(MODALITY_KEYS) if "cross_img" in targets else [k for k in MODALITY_KEYS if k in targets]
        if not keys or self.config.kd_weight == 0:
            return 0.0
        model, dev, pub = self.model, self.device, self.public
        model.train()
        # Batch-norm running statistics are not the distillation's to move: its forward passes
        # over the public images would otherwise change the evaluated model even at a vanishing
        # kd_weight (the public steps already track those images' statistics).
        buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
        total, steps = 0.0, 0
        gen = self._seed(server_round, "creamfl-distill")
        for _ in range(self.config.distill_epochs):
            for idx in batches(len(pub), self.config.server_batch_size, gen):
                reps = {}
                with autocast(dev):
                    if "img" in keys:
                        reps["img"] = model.encode_image(to_device_batch(pub.images[idx], dev))
                    if "txt" in keys:
                        reps["txt"] = model.encode_text(pub.tokens[idx].to(dev))
                loss = self.kd_loss(reps, idx, targets)
                if not loss.requires_grad:
                    continue
                self.distill_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.distill_optimizer.step()
                total += float(loss.detach())
                steps += 1
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
        return total / max(steps, 1)
