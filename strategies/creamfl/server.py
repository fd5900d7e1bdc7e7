"""CreamFL's server half: its own image-text model, the representation ensemble, distillation, retrieval."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from data.captioned import PairedSplit, captioned_of
from models.accel import pick_device, prepare_model
from strategies.base import ServerEnv, derive_seed
from strategies.creamfl.alignment import alignment_weights, client_alignment, held_out_items, select_clients
from strategies.creamfl.config import CreamFLConfig
from strategies.creamfl.losses import (
    aggregate,
    alignment_r1,
    ensemble_scores,
    ensemble_weights,
    retrieval_metrics,
    weight_spread,
)
from strategies.creamfl.models import build_client_model, build_server_model, concat, encode_split
from strategies.creamfl.protocol import MODALITY_KEYS, OTHER, check_reply, pack_reps, parse_reply
from strategies.creamfl.training import ServerTraining
from strategies.fedavg import FedAvgServer


class CreamFLServer(FedAvgServer):
    """The server half: its own image-text model, the ensemble and the distillation."""

    def __init__(self, *, config: CreamFLConfig) -> None:
        # fraction_train 0 is the public-only baseline: Flower's FedAvg then sends no message.
        super().__init__(config=config)
        self.config: CreamFLConfig = config
        self.model: Any = None
        self.training: ServerTraining | None = None
        self.global_reps: dict[str, torch.Tensor] = {}
        self.pending: dict[str, torch.Tensor] = {}   # aggregated reps not yet distilled
        self.last_round = 0
        self.last_retrieval: dict[str, float] = {}
        self._metrics: dict[int, dict[str, float]] = {}

    # ---- set-up and state ---------------------------------------------------------------------
    def setup(self, env: ServerEnv) -> None:
        super().setup(env)
        cfg = self.config
        self.data = captioned_of(env.task)
        self.device = pick_device(str(env.cfg.get("device", "auto")))
        torch.manual_seed(derive_seed(env.cfg["seed"], "creamfl-server"))
        self.model = prepare_model(build_server_model(cfg, self.data), self.device)
        for modality in set(self.data.client_types):  # a bad client_models entry fails before round 1
            build_client_model(cfg, self.data, modality, 10)
        self.public = self.data.public()
        self.held = held_out_items(len(self.public), cfg.align_holdout,
                                   torch.Generator().manual_seed(derive_seed(env.cfg["seed"], "creamfl-holdout")))
        train_pairs = self.public if cfg.server_data == "public" else concat(self.public, self.data.private_pairs())
        self.training = ServerTraining(self.model, config=cfg, device=self.device, public=self.public,
                                       train_pairs=train_pairs, run_seed=env.cfg["seed"])
        self.val_split, self.test_split = self.data.val(), self.data.test()

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The server model's optimizer (its public InfoNCE steps)."""
        assert self.training is not None
        return self.training.optimizer

    def _arrays(self) -> ArrayRecord:
        assert self.model is not None
        return ArrayRecord({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

    def initial_arrays(self, default: ArrayRecord) -> ArrayRecord:
        return self._arrays()

    def state_dict(self) -> dict[str, Any]:
        assert self.model is not None and self.training is not None
        # Copies: on the CPU, .cpu() aliases the live tensors.
        return {"model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                **self.training.state_dict(), "round": self.last_round,
                "pending": {k: v.clone() for k, v in self.pending.items()},
                "retrieval": dict(self.last_retrieval)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.model is not None and self.training is not None
        self.model.load_state_dict(state["model"])
        self.training.load_state_dict(state)
        self.last_round = int(state["round"])
        self.pending = dict(state.get("pending", {}))
        self.last_retrieval = dict(state.get("retrieval", {}))

    # ---- the server's own steps ---------------------------------------------------------------
    def public_step(self, server_round: int) -> float:
        """`server_epochs` of symmetric InfoNCE on the server's pairs (plus joint distillation)."""
        assert self.training is not None
        joint = self.pending if self.config.distill_mode == "joint" else {}
        loss = self.training.public_step(server_round, joint)
        if joint:
            self.pending = {}
        return loss

    def distill(self, server_round: int) -> dict[str, float]:
        """Separate optimizer steps toward the pending aggregated reps (then none are pending): their
        loss and, with `distill_probe`, the validation rsum they gained (negative: cost)."""
        assert self.training is not None
        targets, self.pending = self.pending, {}
        before = self.retrieval(self.val_split)["rsum"] if self.config.distill_probe else None
        out = {"distill_loss": self.training.distill(server_round, targets)}
        if before is not None:
            out["distill_val_rsum_delta"] = self.retrieval(self.val_split)["rsum"] - before
        return out

    # ---- Flower's hooks -----------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> list[Message]:
        assert self.model is not None
        started = time.perf_counter()
        metrics: dict[str, float] = {}
        if self.pending and self.config.distill_order == "before_public" and self.config.distill_mode == "separate":
            metrics.update(self.distill(server_round))
        metrics["public_loss"] = self.public_step(server_round)
        self.global_reps = {k: encode_split(self.model, self.public, k, self.device) for k in MODALITY_KEYS}
        metrics["global_alignment"] = alignment_r1(self.global_reps["img"], self.global_reps["txt"])
        metrics["server_step_s"] = time.perf_counter() - started
        self._metrics[server_round] = metrics
        self.last_round = server_round
        reps = pack_reps(self.global_reps, self.config.wire_dtype)
        return list(super().configure_train(server_round, reps, config, grid))

    def validate_train_reply(self, content: RecordDict, sent: ArrayRecord) -> str | None:
        """Replies carry public-set representations (protocol.check_reply)."""
        return check_reply(content, public_size=len(self.public), embed_dim=self.config.embed_dim,
                           max_num_examples=self.max_num_examples)

    def aggregate_train(self, server_round: int,
                        replies: Any) -> tuple[ArrayRecord | None, MetricRecord | None]:
        metrics = self._metrics.setdefault(server_round, {})
        local: dict[str, list[torch.Tensor]] = {"img": [], "txt": []}
        kinds: dict[str, list[str]] = {"img": [], "txt": []}
        train: dict[str, list[float]] = {}
        for reply in replies:
            reps, numbers = parse_reply(reply.content)
            kind = "image_text" if len(reps) == 2 else ("image" if "img" in reps else "text")
            for key in MODALITY_KEYS:
                if key in reps:
                    local[key].append(reps[key])
                    kinds[key].append(kind)
            for name, value in numbers.items():
                train.setdefault(name, []).append(value)
        aggregated: dict[str, torch.Tensor] = {}
        for key, reps_k in local.items():
            metrics[f"num_{key}_reps"] = float(len(reps_k))
            if reps_k:
                self._ensemble(key, reps_k, kinds[key], aggregated, metrics)
        if self.config.kd_loss == "crossmodal":
            aggregated = self._crossmodal(local, kinds, metrics)
        if aggregated and bool(self.held.any()):
            aggregated["distil"] = ~self.held  # held-out items measure alignment, are never targets
        for name, values in train.items():
            metrics[f"client_{name}"] = float(np.mean(values))
        self.pending = aggregated
        if aggregated and self.config.distill_order == "after_clients" and self.config.distill_mode == "separate":
            metrics.update(self.distill(server_round))
        return self._arrays(), MetricRecord({k: v for k, v in metrics.items()})

    def _crossmodal(self, local: dict[str, list[torch.Tensor]], kinds: dict[str, list[str]],
                    metrics: dict[str, float]) -> dict[str, torch.Tensor]:
        """kd_loss crossmodal: the image-text clients' reps of both modalities (kept by kd_clients)."""
        pairs = [(i, t) for i, t in zip((r for r, k in zip(local["img"], kinds["img"]) if k == "image_text"),
                                        (r for r, k in zip(local["txt"], kinds["txt"]) if k == "image_text"))]
        if self.config.kd_clients == "aligned" and pairs:
            ids, held = self.public.caption_ids[self.held], self.held
            pairs = [(i, t) for i, t in pairs if alignment_r1(i[held], t[held], ids) >= self.config.align_min]
        metrics["kd_crossmodal_clients"] = float(len(pairs))
        if not pairs:
            return {}
        return {"cross_img": torch.stack([i for i, _ in pairs]), "cross_txt": torch.stack([t for _, t in pairs])}

    def _client_alignment(self, key: str, stacked: torch.Tensor, kinds: list[str],
                          metrics: dict[str, float]) -> torch.Tensor:
        """Each client's alignment (K,) on the held-out public items (all of them when none are
        held out), recorded per client type as `align_<type>_<key>` (the server's own: `align_server_<key>`)."""
        ids, other = self.public.caption_ids, self.global_reps[OTHER[key]]
        items = self.held if bool(self.held.any()) else torch.ones(len(self.public), dtype=torch.bool)
        align = client_alignment(stacked, other, ids, items)
        metrics[f"align_server_{key}"] = alignment_r1(self.global_reps[key][items], other[items], ids[items])
        for kind in sorted(set(kinds)):
            metrics[f"align_{kind}_{key}"] = float(np.mean([float(a) for a, k in zip(align, kinds) if k == kind]))
        return align

    def _ensemble(self, key: str, reps_k: list[torch.Tensor], kinds: list[str], out: dict[str, torch.Tensor],
                  metrics: dict[str, float]) -> None:
        """The aggregate of one modality's client reps (and what the configured kd_loss needs)."""
        cfg = self.config
        ids = self.public.caption_ids
        stacked = torch.stack(reps_k)                       # (K, P, D)
        other = self.global_reps[OTHER[key]]
        metrics[f"alignment_{key}"] = float(np.mean([alignment_r1(r, other, ids) for r in reps_k]))
        align = self._client_alignment(key, stacked, kinds, metrics)
        if cfg.kd_clients == "aligned":
            keep = select_clients(align, cfg.align_min)
            metrics[f"kd_clients_kept_{key}"] = float(keep.float().mean())
            if not bool(keep.any()):
                return  # no client of this modality aligns well enough: nothing to distil
            stacked, align = stacked[keep], align[keep]
        weights: torch.Tensor | None = None
        if cfg.kd_client_weights == "alignment":
            weights = alignment_weights(align, stacked.shape[1])
            if weights is None:
                return
        elif cfg.ensemble == "contrastive":
            weights = ensemble_weights(stacked, other, cfg.ensemble_temperature)
        if weights is not None:
            if cfg.kd_loss == "relational":
                out[f"w_{key}"] = weights
            spread = weight_spread(weights)
            metrics[f"weight_spread_{key}"] = spread["spread"]
            metrics[f"weight_entropy_{key}"] = spread["entropy"]
        agg = aggregate(stacked, weights)
        if cfg.kd_normalise:
            agg = F.normalize(agg, dim=-1)
        metrics[f"alignment_agg_{key}"] = alignment_r1(agg, other, ids)
        # Where the targets sit relative to the server's own (unit) reps of the same items: their
        # length, and their direction (cosine 0: unrelated; 1: the server's own geometry).
        metrics[f"kd_target_norm_{key}"] = float(agg.norm(dim=-1).mean())
        metrics[f"kd_target_cos_{key}"] = float(F.cosine_similarity(agg, self.global_reps[key], dim=-1).mean())
        out[key] = agg
        if self.config.kd_loss == "relational":
            out[f"stack_{key}"] = stacked
        self._gate(key, agg, other, out, metrics)

    def _gate(self, key: str, agg: torch.Tensor, other: torch.Tensor, out: dict[str, torch.Tensor],
              metrics: dict[str, float]) -> None:
        """kd_gate: `item` keeps items whose aggregate is at least as well aligned as the server's
        own rep of them; `alignment` scales the term by the aggregate's R@1 relative to the server's."""
        if self.config.kd_gate == "item":
            own = ensemble_scores(self.global_reps[key].unsqueeze(0), other)[0]
            theirs = ensemble_scores(agg.unsqueeze(0), other)[0]
            mask = theirs >= own
            out[f"mask_{key}"] = mask
            metrics[f"kd_kept_{key}"] = float(mask.float().mean())
        elif self.config.kd_gate == "alignment":
            own = alignment_r1(self.global_reps[key], other, self.public.caption_ids)
            theirs = metrics[f"alignment_agg_{key}"]
            scale = min(1.0, theirs / own) if own > 0 else 0.0
            out[f"scale_{key}"] = torch.tensor(scale)
            metrics[f"kd_scale_{key}"] = scale

    def round_metrics(self, server_round: int) -> dict[str, float]:
        return dict(self._metrics.pop(server_round, {}))

    def evaluate_global(self, server_round: int, arrays: ArrayRecord) -> dict[str, Any]:
        """Test retrieval of the server model (reported) and validation retrieval (for tuning)."""
        assert self.model is not None
        out: dict[str, Any] = {"accuracy": None, "loss": None}
        test = self.retrieval(self.test_split)
        out.update(test)
        out.update({f"val_{k}": v for k, v in self.retrieval(self.val_split).items()})
        self.last_retrieval = test
        return out

    def retrieval(self, split: PairedSplit) -> dict[str, float]:
        assert self.model is not None
        img = encode_split(self.model, split, "img", self.device)
        txt = encode_split(self.model, split, "txt", self.device)
        return retrieval_metrics(img, txt, split.caption_ids)

    def summary_extra(self) -> dict[str, Any]:
        return {"retrieval": dict(self.last_retrieval)}
