"""CreamFL (Yu et al., ICLR 2023): multimodal FL via a contrastive representation ensemble.

No weights travel. Each round:
1. the server trains its own image-text model on the public pairs (InfoNCE, both directions);
2. it sends the global image and text representations of the public set to the sampled clients;
3. each client trains on its private data (its own task loss), then passes over the public set
   with an inter-modal regulariser (its rep of item i against all global reps of the other
   modality, target i) and an intra-modal one (positive: the global rep of item i in the same
   modality; negative: its own previous-round model's rep of item i);
4. clients reply with their public-set representations, only of their own modalities;
5. the server ensembles them per item: w_ki = softmax over clients of the log-softmax score of
   client k's rep of item i against the global reps of the other modality (`ensemble:
   contrastive`), or uniformly (`ensemble: mean`);
6. it distils the aggregate into its model (MSE, `kd_weight`; each modality's term once) and
   is evaluated on test retrieval (Recall@1/5/10 both ways, rsum) every round.

Beyond the paper (each off by default, so the defaults are the published method):
`ensemble_temperature` sharpens the weights, `reg_passes` repeats the regulariser pass,
`distill_order: before_public` distils before the next public step, `kd_gate` keeps only
aggregated reps that are better aligned than the server's own (`item`) or scales the term by the
aggregate's measured alignment (`alignment`), and `distill_mode: joint` adds the distillation to
the public InfoNCE steps instead of taking separate optimizer steps on it.
Baselines through the same code: `fraction_train: 0` trains the server alone (public-only);
with `server_data: all` it also trains on every client's private pairs (the centralised bound).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from data.captioned import CaptionedData, PairedSplit, captioned_of
from models.accel import autocast, make_optimizer, pick_device, prepare_model, to_device_batch
from models.multimodal import ImageTextModel, image_spec, text_spec
from strategies.base import ClientHalf, ServerEnv, StrategyDef, derive_seed
from strategies.creamfl_losses import (
    aggregate,
    alignment_r1,
    ensemble_scores,
    ensemble_weights,
    info_nce,
    inter_modal_loss,
    intra_modal_loss,
    relational_kd_loss,
    retrieval_metrics,
    weight_spread,
)
from strategies.fedavg import FedAvgServer
from strategies.validation import check_num_examples


MODALITY_KEYS = ("img", "txt")
OTHER = {"img": "txt", "txt": "img"}
STATE_KEY = "creamfl.model"  # a client's own model in Flower's Context.state

DEFAULT_SERVER_IMAGE: dict[str, Any] = {"kind": "resnet", "widths": [16, 32, 64], "blocks": 1, "norm": "batch"}
DEFAULT_SERVER_TEXT: dict[str, Any] = {"kind": "transformer", "dim": 64, "depth": 2, "heads": 4}
DEFAULT_CLIENT_MODELS: dict[str, dict[str, Any]] = {
    "image": {"image": {"kind": "cnn", "channels": [16, 32], "fc": 64}},
    "text": {"text": {"kind": "bag", "dim": 32, "hidden": 64}},
    "image_text": {"image": {"kind": "cnn", "channels": [16, 32], "fc": 64},
                   "text": {"kind": "transformer", "dim": 32, "depth": 1, "heads": 2}},
}
CLIENT_DEFAULTS: dict[str, Any] = {
    "local_epochs": 1, "client_lr": 1e-3, "client_batch_size": 32, "client_temperature": 0.1,
    "inter": True, "intra": True, "interintra_weight": 0.5, "inter_temperature": 0.5,
    "intra_temperature": 0.5, "reg_passes": 1, "wire_dtype": "float32", "class_scale": 10.0,
}


def _strategy_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    return {**CLIENT_DEFAULTS, **cfg.get("strategy", {})}


def build_server_model(cfg: dict[str, Any], data: CaptionedData, *, embed_dim: int | None = None,
                       image: dict | None = None, text: dict | None = None) -> ImageTextModel:
    """The server's image-text model: from the arguments, else the run's strategy config."""
    s = cfg.get("strategy", {})
    return ImageTextModel(
        embed_dim=int(embed_dim or s.get("embed_dim", 64)),
        input_shape=(3, data.cfg.image_size, data.cfg.image_size),
        vocab_size=len(data.vocab), max_len=data.tokens.shape[1],
        image=image_spec(image or s.get("server_image") or DEFAULT_SERVER_IMAGE, "strategy.server_image"),
        text=text_spec(text or s.get("server_text") or DEFAULT_SERVER_TEXT, "strategy.server_text"),
        image_feature_dim=data.image_feature_dim, text_feature_dim=data.text_feature_dim,
    )


def build_client_model(cfg: dict[str, Any], data: CaptionedData, modality: str, num_classes: int) -> ImageTextModel:
    """The model of one client type (`image`, `text` or `image_text`), from strategy.client_models."""
    s = _strategy_cfg(cfg)
    spec = {**DEFAULT_CLIENT_MODELS, **(s.get("client_models") or {})}[modality]
    return ImageTextModel(
        embed_dim=int(s.get("embed_dim", 64)), input_shape=(3, data.cfg.image_size, data.cfg.image_size),
        vocab_size=len(data.vocab), max_len=data.tokens.shape[1],
        image=image_spec(spec.get("image"), f"strategy.client_models.{modality}.image") if modality != "text" else None,
        text=text_spec(spec.get("text"), f"strategy.client_models.{modality}.text") if modality != "image" else None,
        num_classes=num_classes if modality != "image_text" else 0, class_scale=float(s["class_scale"]),
        image_feature_dim=data.image_feature_dim, text_feature_dim=data.text_feature_dim,
    )


def batches(n: int, batch_size: int, gen: torch.Generator | None) -> Iterator[torch.Tensor]:
    """Index batches over range(n): shuffled with `gen`, in order when it is None."""
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def _inputs(split: PairedSplit, key: str) -> torch.Tensor:
    return split.images if key == "img" else split.tokens


@torch.no_grad()
def encode_split(model: ImageTextModel, split: PairedSplit, key: str, device: torch.device,
                 batch_size: int = 256) -> torch.Tensor:
    """Unit representations (n, D) of a split's images or captions, on the CPU, in fp32."""
    was = model.training
    model.eval()
    out = []
    x = _inputs(split, key)
    for idx in batches(len(split), batch_size, None):
        with autocast(device):
            out.append(model.encode(key, to_device_batch(x[idx], device)).float().cpu())
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, model.embed_dim)


def _concat(a: PairedSplit, b: PairedSplit) -> PairedSplit:
    return PairedSplit(torch.cat([a.images, b.images]), torch.cat([a.tokens, b.tokens]),
                       torch.cat([a.caption_ids, b.caption_ids]), torch.cat([a.attributes, b.attributes]))


class CreamFLServer(FedAvgServer):
    """The server half: its own image-text model, the ensemble and the distillation."""

    def __init__(self, *, fraction_train: float = 0.5, min_train_nodes: int = 2,
                 embed_dim: int = 64, server_image: dict | None = None, server_text: dict | None = None,
                 client_models: dict | None = None, server_lr: float = 1e-3, server_weight_decay: float = 1e-4,
                 server_batch_size: int = 64, server_epochs: int = 1, temperature: float = 0.1,
                 server_data: str = "public", ensemble: str = "contrastive", ensemble_temperature: float = 1.0,
                 kd_weight: float = 0.3, distill_epochs: int = 1, distill_order: str = "after_clients",
                 distill_mode: str = "separate", kd_gate: str = "none", kd_loss: str = "mse",
                 relational_temperature: float = 0.1,
                 # client-side settings (read by the client half from the run's config)
                 local_epochs: int = 1, client_lr: float = 1e-3, client_batch_size: int = 32,
                 client_temperature: float = 0.1, inter: bool = True, intra: bool = True,
                 interintra_weight: float = 0.5, inter_temperature: float = 0.5, intra_temperature: float = 0.5,
                 reg_passes: int = 1, wire_dtype: str = "float32", class_scale: float = 10.0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("fraction_evaluate", 0.0)
        # fraction_train 0 is the public-only baseline: Flower's FedAvg then sends no message.
        super().__init__(fraction_train=fraction_train, min_train_nodes=min_train_nodes, **kwargs)
        choices = {"server_data": (server_data, ("public", "all")),
                   "ensemble": (ensemble, ("contrastive", "mean")),
                   "distill_order": (distill_order, ("after_clients", "before_public")),
                   "distill_mode": (distill_mode, ("separate", "joint")),
                   "kd_gate": (kd_gate, ("none", "item", "alignment")),
                   "kd_loss": (kd_loss, ("mse", "relational")),
                   "wire_dtype": (wire_dtype, ("float32", "float16"))}
        for key, (value, valid) in choices.items():
            if value not in valid:
                raise ValueError(f"strategy.{key}={value!r}; valid choices: {', '.join(valid)}")
        positive = {"embed_dim": embed_dim, "server_lr": server_lr, "server_batch_size": server_batch_size,
                    "temperature": temperature, "ensemble_temperature": ensemble_temperature,
                    "inter_temperature": inter_temperature, "intra_temperature": intra_temperature,
                    "client_batch_size": client_batch_size, "client_lr": client_lr,
                    "client_temperature": client_temperature, "relational_temperature": relational_temperature}
        for key, value in positive.items():
            if not float(value) > 0:
                raise ValueError(f"strategy.{key} must be > 0, got {value!r}")
        for key, value in {"server_epochs": server_epochs, "distill_epochs": distill_epochs,
                           "local_epochs": local_epochs, "reg_passes": reg_passes}.items():
            if int(value) < 0:
                raise ValueError(f"strategy.{key} must be >= 0, got {value!r}")
        if kd_weight < 0 or interintra_weight < 0:
            raise ValueError("strategy.kd_weight and strategy.interintra_weight must be >= 0")
        self.embed_dim = int(embed_dim)
        self.server_image, self.server_text = server_image, server_text
        self.server_lr, self.server_weight_decay = float(server_lr), float(server_weight_decay)
        self.server_batch_size, self.server_epochs = int(server_batch_size), int(server_epochs)
        self.temperature, self.server_data = float(temperature), server_data
        self.ensemble, self.ensemble_temperature = ensemble, float(ensemble_temperature)
        self.kd_weight, self.distill_epochs = float(kd_weight), int(distill_epochs)
        self.distill_order, self.distill_mode, self.kd_gate = distill_order, distill_mode, kd_gate
        self.kd_loss, self.relational_temperature = kd_loss, float(relational_temperature)
        self.model: ImageTextModel | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.global_reps: dict[str, torch.Tensor] = {}
        self.pending: dict[str, torch.Tensor] = {}   # aggregated reps not yet distilled
        self.last_round = 0
        self.last_retrieval: dict[str, float] = {}
        self._metrics: dict[int, dict[str, float]] = {}

    # ---- set-up and state ---------------------------------------------------------------------
    def setup(self, env: ServerEnv) -> None:
        super().setup(env)
        self.data = captioned_of(env.task)
        self.device = pick_device(str(env.cfg.get("device", "auto")))
        torch.manual_seed(derive_seed(env.cfg["seed"], "creamfl-server"))
        model = build_server_model(env.cfg, self.data, embed_dim=self.embed_dim, image=self.server_image,
                                   text=self.server_text)
        self.model = prepare_model(model, self.device)
        self.optimizer = make_optimizer("adamw", self.model.parameters(), self.server_lr, 0.0,
                                        self.server_weight_decay, self.device)
        for modality in set(self.data.client_types):  # a bad client_models entry fails before round 1
            build_client_model(env.cfg, self.data, modality, 10)
        self.public = self.data.public()
        self.train_pairs = self.public if self.server_data == "public" else _concat(self.public, self.data.private_pairs())
        self.val_split, self.test_split = self.data.val(), self.data.test()

    def _arrays(self) -> ArrayRecord:
        assert self.model is not None
        return ArrayRecord({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

    def initial_arrays(self, default: ArrayRecord) -> ArrayRecord:
        return self._arrays()

    def state_dict(self) -> dict[str, Any]:
        assert self.model is not None and self.optimizer is not None
        # Copies: on the CPU, .cpu() and the optimizer's state_dict alias the live tensors.
        return {"model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "optimizer": copy.deepcopy(self.optimizer.state_dict()), "round": self.last_round,
                "pending": {k: v.clone() for k, v in self.pending.items()},
                "retrieval": dict(self.last_retrieval)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.model is not None and self.optimizer is not None
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.last_round = int(state["round"])
        self.pending = dict(state.get("pending", {}))
        self.last_retrieval = dict(state.get("retrieval", {}))

    # ---- the server's own steps ---------------------------------------------------------------
    def _seed(self, server_round: int, purpose: str) -> torch.Generator:
        return torch.Generator().manual_seed(derive_seed(self.env.cfg["seed"], server_round, purpose))

    def public_step(self, server_round: int) -> float:
        """`server_epochs` of symmetric InfoNCE on the server's pairs (plus joint distillation)."""
        assert self.model is not None and self.optimizer is not None
        model, dev, pairs = self.model, self.device, self.train_pairs
        joint = self.pending if self.distill_mode == "joint" else {}
        n_public = len(self.public)
        model.train()
        total, steps = 0.0, 0
        gen = self._seed(server_round, "creamfl-public")
        for _ in range(self.server_epochs):
            for idx in batches(len(pairs), self.server_batch_size, gen):
                if len(idx) < 2:
                    continue
                with autocast(dev):
                    zi = model.encode_image(to_device_batch(pairs.images[idx], dev))
                    zt = model.encode_text(pairs.tokens[idx].to(dev))
                loss = info_nce(zi, zt, self.temperature)
                if joint:  # public items are the first n_public of the server's pairs
                    pub = idx < n_public
                    if pub.any():
                        loss = loss + self._kd_loss({"img": zi[pub], "txt": zt[pub]}, idx[pub], joint)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += float(loss.detach())
                steps += 1
        if joint:
            self.pending = {}
        return total / max(steps, 1)

    def _kd_loss(self, reps: dict[str, torch.Tensor], idx: torch.Tensor,
                 targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """kd_weight * the distillation term of each modality (once each), gated per config.

        `mse` (published): MSE to the aggregated reps. `relational`: KL to the clients'
        (ensemble-weighted) in-batch similarity structure (creamfl_losses.relational_kd_loss)."""
        loss = torch.zeros((), device=self.device)
        for key in MODALITY_KEYS:
            if key not in targets or key not in reps:
                continue
            z = reps[key]
            scale = float(targets[f"scale_{key}"]) if f"scale_{key}" in targets else 1.0
            if self.kd_loss == "relational":
                if len(idx) < 3:
                    continue
                stack = targets[f"stack_{key}"][:, idx].to(self.device)
                weights = targets.get(f"w_{key}")
                term = relational_kd_loss(z, stack, self.relational_temperature,
                                          None if weights is None else weights[:, idx].to(self.device))
            else:
                t = targets[key][idx].to(self.device)
                mask = targets.get(f"mask_{key}")
                if mask is not None:
                    keep = mask[idx].to(self.device)
                    if not keep.any():
                        continue
                    z, t = z[keep], t[keep]
                term = F.mse_loss(z, t)
            loss = loss + self.kd_weight * scale * term
        return loss

    def distill(self, server_round: int) -> float:
        """Separate optimizer steps on the MSE to the aggregated reps over the public set."""
        assert self.model is not None and self.optimizer is not None
        targets, self.pending = self.pending, {}
        keys = [k for k in MODALITY_KEYS if k in targets]
        if not keys or self.kd_weight == 0:
            return 0.0
        model, dev, pub = self.model, self.device, self.public
        model.train()
        total, steps = 0.0, 0
        gen = self._seed(server_round, "creamfl-distill")
        for _ in range(self.distill_epochs):
            for idx in batches(len(pub), self.server_batch_size, gen):
                reps = {}
                with autocast(dev):
                    if "img" in keys:
                        reps["img"] = model.encode_image(to_device_batch(pub.images[idx], dev))
                    if "txt" in keys:
                        reps["txt"] = model.encode_text(pub.tokens[idx].to(dev))
                loss = self._kd_loss(reps, idx, targets)
                if not loss.requires_grad:
                    continue
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += float(loss.detach())
                steps += 1
        return total / max(steps, 1)

    # ---- Flower's hooks -----------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> list[Message]:
        assert self.model is not None
        started = time.perf_counter()
        metrics: dict[str, float] = {}
        if self.pending and self.distill_order == "before_public" and self.distill_mode == "separate":
            metrics["distill_loss"] = self.distill(server_round)
        metrics["public_loss"] = self.public_step(server_round)
        self.global_reps = {k: encode_split(self.model, self.public, k, self.device) for k in MODALITY_KEYS}
        metrics["global_alignment"] = alignment_r1(self.global_reps["img"], self.global_reps["txt"])
        metrics["server_step_s"] = time.perf_counter() - started
        self._metrics[server_round] = metrics
        self.last_round = server_round
        dtype = np.float16 if _strategy_cfg(self.env.cfg)["wire_dtype"] == "float16" else np.float32
        reps = ArrayRecord(array_dict={k: Array(np.ascontiguousarray(v.numpy().astype(dtype)))
                                       for k, v in self.global_reps.items()})
        return list(super().configure_train(server_round, reps, config, grid))

    def validate_train_reply(self, content: RecordDict, sent: ArrayRecord) -> str | None:
        """Replies carry public-set representations: one ArrayRecord with `img` and/or `txt`,
        each (public_size, embed_dim), finite; and `num-examples`."""
        records = list(content.array_records.values())
        if len(records) != 1:
            return f"expected exactly one ArrayRecord of representations, got {len(records)}"
        reps = records[0]
        keys = set(reps)
        if not keys or keys - set(MODALITY_KEYS):
            return f"representation keys must be a non-empty subset of {list(MODALITY_KEYS)}, got {sorted(keys)}"
        expected = (len(self.public), self.embed_dim)
        for key in sorted(keys):
            arr = reps[key]
            if tuple(arr.shape) != expected:
                return (f"{key!r} representations have shape {tuple(arr.shape)}, expected {expected} "
                        "(public_size, embed_dim)")
            values = arr.numpy()
            if not np.issubdtype(values.dtype, np.floating):
                return f"{key!r} representations have dtype {values.dtype}, expected a float type"
            if not np.isfinite(values).all():
                return f"{key!r} representations hold NaN or Inf values"
        return check_num_examples(content, max_num_examples=self.max_num_examples)

    def aggregate_train(self, server_round: int,
                        replies: Any) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        metrics = self._metrics.setdefault(server_round, {})
        local: dict[str, list[torch.Tensor]] = {"img": [], "txt": []}
        train: dict[str, list[float]] = {}
        for reply in replies:
            reps = next(iter(reply.content.array_records.values()))
            for key in MODALITY_KEYS:
                if key in reps:
                    local[key].append(torch.from_numpy(reps[key].numpy().astype(np.float32)))
            for name, value in next(iter(reply.content.metric_records.values())).items():
                if name != "num-examples" and isinstance(value, (int, float)):
                    train.setdefault(name, []).append(float(value))
        ids = self.public.caption_ids
        aggregated: dict[str, torch.Tensor] = {}
        for key, reps_k in local.items():
            metrics[f"num_{key}_reps"] = float(len(reps_k))
            if not reps_k:
                continue
            stacked = torch.stack(reps_k)                       # (K, P, D)
            other = self.global_reps[OTHER[key]]
            metrics[f"alignment_{key}"] = float(np.mean([alignment_r1(r, other, ids) for r in reps_k]))
            if self.ensemble == "contrastive":
                weights = ensemble_weights(stacked, other, self.ensemble_temperature)
                if self.kd_loss == "relational":
                    aggregated[f"w_{key}"] = weights
                spread = weight_spread(weights)
                metrics[f"weight_spread_{key}"] = spread["spread"]
                metrics[f"weight_entropy_{key}"] = spread["entropy"]
                agg = aggregate(stacked, weights)
            else:
                agg = aggregate(stacked)
            metrics[f"alignment_agg_{key}"] = alignment_r1(agg, other, ids)
            aggregated[key] = agg
            if self.kd_loss == "relational":
                aggregated[f"stack_{key}"] = stacked
            self._gate(key, agg, other, aggregated, metrics)
        for name, values in train.items():
            metrics[f"client_{name}"] = float(np.mean(values))
        self.pending = aggregated
        if aggregated and self.distill_order == "after_clients" and self.distill_mode == "separate":
            metrics["distill_loss"] = self.distill(server_round)
        return self._arrays(), MetricRecord({k: v for k, v in metrics.items()})

    def _gate(self, key: str, agg: torch.Tensor, other: torch.Tensor, out: dict[str, torch.Tensor],
              metrics: dict[str, float]) -> None:
        """kd_gate: `item` keeps items whose aggregate is at least as well aligned as the server's
        own rep of them; `alignment` scales the term by the aggregate's R@1 relative to the server's."""
        if self.kd_gate == "item":
            own = ensemble_scores(self.global_reps[key].unsqueeze(0), other)[0]
            theirs = ensemble_scores(agg.unsqueeze(0), other)[0]
            mask = theirs >= own
            out[f"mask_{key}"] = mask
            metrics[f"kd_kept_{key}"] = float(mask.float().mean())
        elif self.kd_gate == "alignment":
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


def _sgd_step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """One optimizer step on `loss`; returns its value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


class CreamFLClient(ClientHalf):
    """The client half: private training, the regularised public pass, public-set reps back."""

    message_types: ClassVar[dict[str, str]] = {"train": "train"}

    def train(self, message: Message) -> Message:
        env = self.env
        s = _strategy_cfg(env.cfg)
        config = message.content["config"]
        server_round = int(config["server-round"])
        data = captioned_of(env.task)
        mine = data.client(env.partition_id)
        device = env.device
        torch.manual_seed(derive_seed(env.cfg["seed"], env.partition_id, "creamfl-client-init"))
        model = build_client_model(env.cfg, data, mine.modality, mine.num_classes)
        if STATE_KEY in env.state:
            model.load_state_dict(env.state[STATE_KEY].to_torch_state_dict())
        model = prepare_model(model, device)
        old = copy.deepcopy(model).eval()  # the previous round's model: the intra-modal negative
        for p in old.parameters():
            p.requires_grad_(False)
        global_reps = {k: torch.from_numpy(v.numpy().astype(np.float32)).to(device)
                       for k, v in message.content["arrays"].items()}
        opt = make_optimizer("adamw", model.parameters(), float(s["client_lr"]), 0.0, 0.0, device)
        gen = torch.Generator().manual_seed(env.seed_for(server_round))
        private_loss = self._private(model, opt, mine, s, gen, device)
        public = data.public()
        keys = model.modalities
        reg_loss = 0.0
        if (s["inter"] or s["intra"]) and float(s["interintra_weight"]) > 0:
            for _ in range(int(s["reg_passes"])):
                reg_loss = self._regularise(model, old, opt, public, keys, global_reps, s, gen, device)
        reps = {k: encode_split(model, public, k, device) for k in keys}
        env.state[STATE_KEY] = ArrayRecord({k: v.detach().cpu() for k, v in model.state_dict().items()})
        dtype = np.float16 if s["wire_dtype"] == "float16" else np.float32
        arrays = ArrayRecord(array_dict={k: Array(np.ascontiguousarray(v.numpy().astype(dtype)))
                                         for k, v in reps.items()})
        metrics = MetricRecord({"num-examples": len(mine), "train_loss": private_loss, "reg_loss": reg_loss})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)

    @staticmethod
    def _private(model: ImageTextModel, opt: torch.optim.Optimizer, mine: Any, s: dict[str, Any],
                 gen: torch.Generator, device: torch.device) -> float:
        """The client's own task: classify (image- or text-only) or InfoNCE (image-text pairs)."""
        model.train()
        total, steps = 0.0, 0
        bs = int(s["client_batch_size"])
        for _ in range(int(s["local_epochs"])):
            for idx in batches(len(mine), bs, gen):
                with autocast(device):
                    if mine.modality == "image_text":
                        if len(idx) < 2:
                            continue
                        zi = model.encode_image(to_device_batch(mine.images[idx], device))
                        zt = model.encode_text(mine.tokens[idx].to(device))
                    elif mine.modality == "image":
                        z = model.encode_image(to_device_batch(mine.images[idx], device))
                    else:
                        z = model.encode_text(mine.tokens[idx].to(device))
                if mine.modality == "image_text":
                    loss = info_nce(zi, zt, float(s["client_temperature"]))
                else:
                    loss = F.cross_entropy(model.classify(z), mine.labels[idx].to(device))
                total += _sgd_step(opt, loss)
                steps += 1
        return total / max(steps, 1)

    @staticmethod
    def _regularise(model: ImageTextModel, old: ImageTextModel, opt: torch.optim.Optimizer,
                    public: PairedSplit, keys: tuple[str, ...], global_reps: dict[str, torch.Tensor],
                    s: dict[str, Any], gen: torch.Generator, device: torch.device) -> float:
        """One pass over the public set with the inter- and intra-modal contrast regularisers."""
        model.train()
        total, steps = 0.0, 0
        for idx in batches(len(public), int(s["client_batch_size"]), gen):
            idx_dev = idx.to(device)
            inter = torch.zeros((), device=device)
            intra = torch.zeros((), device=device)
            for key in keys:
                x = to_device_batch(_inputs(public, key)[idx], device)
                with autocast(device):
                    z = model.encode(key, x)
                if s["inter"]:
                    inter = inter + inter_modal_loss(z, global_reps[OTHER[key]], idx_dev, float(s["inter_temperature"]))
                if s["intra"]:
                    with torch.no_grad(), autocast(device):
                        z_old = old.encode(key, x)
                    intra = intra + intra_modal_loss(z, global_reps[key][idx_dev], z_old,
                                                     float(s["intra_temperature"])) / len(keys)
            total += _sgd_step(opt, float(s["interintra_weight"]) * (inter + intra))
            steps += 1
        return total / max(steps, 1)


STRATEGY = StrategyDef(
    name="creamfl", server=CreamFLServer, client=CreamFLClient,
    description="CreamFL (Yu et al., ICLR 2023): multimodal FL by a contrastive representation ensemble",
)
