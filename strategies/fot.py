"""FOT (Bakman et al., ICLR 2024): server-side orthogonal projection of updates, task-end subspace sketches."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from torch import nn

from conf.errors import ConfigError, first_line
from conf.typed import between
from strategies.base import ServerEnv, StrategyDef
from strategies.fedavg import FedAvgConfig, FedAvgServer, WeightsClient
from strategies.fot_layers import client_sketches, find_projected_layers, layer_dim
from strategies.fot_subspace import expand_basis, new_directions, project_out, threshold
from strategies.messages import EVALUATE, FOT_SKETCH, TRAIN
from strategies.payload import record_nbytes

log = logging.getLogger("corolla")

SKETCH = FOT_SKETCH
SKETCH_DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclass(frozen=True)
class FOTConfig(FedAvgConfig):
    """FOT's settings on top of FedAvg's; defaults and their meaning in conf/strategy/fot.yaml."""

    server_lr: float = field(metadata=between(0, lo_open=True))
    eps_start: float = field(metadata=between(0, 1, lo_open=True))
    eps_inc: float = field(metadata=between(0, 1, hi_open=True))
    sketch_cols: int | None = field(metadata=between(1))           # null: d
    sketch_dtype: Literal["float32", "float16"]
    sketch_clients: Literal["last_round", "all"]
    sketch_max_samples: int = field(metadata=between(1))
    projected_layers: list[str] | None                              # null: every Linear/Conv2d weight
    project_head: Literal["auto"] | bool
    bias_mode: Literal["free", "freeze_after_first_task"]


class FotServer(FedAvgServer):
    """FedAvg whose update is projected off the bases U of earlier tasks; U grows at each task switch."""

    # The projected update is linear in the weighted mean of the clients' weights, and the bases
    # need only the sums of the sketches: both work under secure aggregation (secagg=true).
    aggregates_by_sum: ClassVar[bool] = True
    secure: Any = None   # set by the secure-aggregation wrapper: sketches are then summed securely
    secure_survivors: list[int] = []   # ... and the clients whose updates made the last sum

    def __init__(self, *, config: FOTConfig, **kwargs: Any) -> None:
        super().__init__(config=config, **kwargs)
        self.config: FOTConfig = config
        self.server_lr = config.server_lr
        self.eps_start, self.eps_inc = config.eps_start, config.eps_inc
        self.sketch_cols = config.sketch_cols
        self.sketch_dtype = config.sketch_dtype
        self.sketch_clients = config.sketch_clients
        self.sketch_max_samples = config.sketch_max_samples
        self.projected_layers = None if config.projected_layers is None else list(config.projected_layers)
        self.project_head = config.project_head
        self.bias_mode = config.bias_mode
        # Method state (state_dict): bases U (d × k, float64), ε_t, the task whose rounds run now,
        # and the clients that answered the task's last round (they sketch at the switch).
        self.bases: dict[str, torch.Tensor] = {}
        self.eps = self.eps_start
        self.task_index = 0
        self.last_round_nodes: list[int] = []
        self.sketch_bytes_total = 0
        self.layer_dims: dict[str, int] = {}
        self.frozen_biases: list[str] = []
        self._global: dict[str, np.ndarray] = {}
        self._server_s: dict[int, float] = {}
        self._sketch_bytes: dict[int, int] = {}
        self._sketch_clients: dict[int, int] = {}

    def setup(self, env: ServerEnv) -> None:
        super().setup(env)
        model = env.build_model()
        # Per-task heads (task-incremental) stay free; a shared head is a layer like any other
        # (the official code projects the output layer on Permuted-MNIST).
        include_head = (env.task.scenario != "task-incremental") if self.project_head == "auto" else bool(self.project_head)
        layers = find_projected_layers(model, self.projected_layers, include_head=include_head)
        if not layers:
            raise ConfigError("FOT found no Linear/Conv2d weights to project; list them in strategy.projected_layers",
                              key="strategy.projected_layers")
        self.layer_dims = {name: layer_dim(m) for name, m in layers.items()}
        params = dict(model.named_parameters())
        biases = [n.removesuffix(".weight") + ".bias" for n in layers]
        biases = [b for b in biases if b in params]
        self.frozen_biases = biases if self.bias_mode == "freeze_after_first_task" else []
        if biases and self.bias_mode == "free":
            log.warning("FOT: %d projected layers have free biases, which are not projected and bring "
                        "forgetting back; use model.bias=false or strategy.bias_mode=freeze_after_first_task",
                        len(biases))
        log.info("FOT projects %s", ", ".join(f"{n} (d={d})" for n, d in self.layer_dims.items()))

    # ---- rounds ----------------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        task = self.env.task_of_round(server_round)
        if self.frozen_biases and task > 0:
            config["fot-frozen"] = list(self.frozen_biases)
        elif "fot-frozen" in config:
            del config["fot-frozen"]
        messages = list(super().configure_train(server_round, arrays, config, grid))  # samples first
        if task > self.task_index:
            self.extract_subspace(server_round, arrays, grid, finished_task=task - 1)
            self.task_index = task
        self._global = {k: v.numpy() for k, v in arrays.items()}
        return messages

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        started = time.perf_counter()
        valid, _ = self._check_and_log_replies(list(replies), is_train=True)
        if not valid:
            return None, None
        if self.env.is_task_end(server_round):
            self.last_round_nodes = (list(self.secure_survivors) if self.secure is not None
                                     else [m.metadata.src_node_id for m in valid])
        contents = [m.content for m in valid]
        weights = np.array([float(c.metric_records[next(iter(c.metric_records))][self.weighted_by_key])
                            for c in contents])
        weights /= weights.sum()
        frozen = set(self.frozen_biases) if self.env.task_of_round(server_round) > 0 else set()
        out = {}
        for key, current in self._global.items():
            mean = sum(w * c[self.arrayrecord_key][key].numpy().astype(np.float64) for w, c in zip(weights, contents))
            if not np.issubdtype(current.dtype, np.floating):  # counters and other integer buffers
                out[key] = Array(np.rint(mean).astype(current.dtype))
                continue
            delta = current.astype(np.float64) - mean
            if key in self.bases:
                delta = project_out(torch.from_numpy(delta), self.bases[key]).numpy()
            if key in frozen:
                delta = np.zeros_like(delta)
            out[key] = Array((current - self.server_lr * delta).astype(current.dtype))
        metrics = self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        self._server_s[server_round] = self._server_s.get(server_round, 0.0) + time.perf_counter() - started
        return ArrayRecord(out), metrics

    # ---- task switch: global principal subspace extraction ---------------------------------
    def extract_subspace(self, server_round: int, arrays: ArrayRecord, grid: Grid, *, finished_task: int) -> None:
        """Ask clients for sketches of the finished task's layer inputs; grow the bases from their sum."""
        nodes = self._sketch_nodes(grid)
        bases = ArrayRecord({f"basis.{name}": Array(u.float().numpy()) for name, u in self.bases.items()})
        config = ConfigRecord({
            "server-round": server_round, "task-id": finished_task,
            "fot-layers": list(self.layer_dims), "fot-sketch-cols": self.sketch_cols or 0,
            "fot-sketch-dtype": self.sketch_dtype, "fot-max-samples": self.sketch_max_samples,
        })
        content = RecordDict({"arrays": arrays, "bases": bases, "config": config})
        timeout = float(self.env.cfg["engine"]["timeout_s"])
        if self.secure is not None:
            self.absorb_secure_sketches(server_round, grid, nodes, content, timeout)
            return
        messages = [Message(content, message_type=SKETCH, dst_node_id=node) for node in nodes]
        replies = list(grid.send_and_receive(messages, timeout=timeout))
        if len(replies) < len(messages):
            log.warning("round %d: %d of %d sketch requests got no reply", server_round,
                        len(messages) - len(replies), len(messages))
        self.absorb_sketches(server_round, replies)

    def absorb_secure_sketches(self, server_round: int, grid: Grid, nodes: list[int], content: RecordDict,
                               timeout: float) -> None:
        """The bases from a secure sum of the sketches: the server sees sum Y, sum r*n and sum n only."""
        from strategies.secagg import secure_sum
        from strategies.secagg.fixedpoint import FixedPoint

        cols = {name: self.sketch_cols or d for name, d in self.layer_dims.items()}
        shapes = {f"Y.{name}": (d, cols[name]) for name, d in self.layer_dims.items()}
        shapes.update({f"rn.{name}": () for name in self.layer_dims})
        shapes.update({f"n.{name}": () for name in self.layer_dims})
        # Sketch entries have no natural bound: a 64-bit ring with a wide range keeps them exact enough.
        fixed_point = FixedPoint(clip=float(self.secure.sketch_clip), modulus_bits=64, max_parties=max(len(nodes), 2))
        result = secure_sum(grid, nodes, request=lambda n: RecordDict(dict(content.items())), message_type=SKETCH,
                            shapes=shapes, fixed_point=fixed_point, max_dropout=self.secure.max_dropout,
                            timeout=timeout, neighbours=self.secure.neighbours)
        if result.clipped:
            log.warning("round %d: %d sketch values lay outside +-%g and were clipped; raise "
                        "secure_aggregation.sketch_clip", server_round, result.clipped, fixed_point.clip)
        self._sketch_clients[server_round] = len(result.survivors)
        sums = result.sums
        started = time.perf_counter()
        self.grow_bases({name: torch.from_numpy(sums[f"Y.{name}"]) for name in self.layer_dims},
                        {name: float(sums[f"rn.{name}"]) / max(float(sums[f"n.{name}"]), 1e-12)
                         for name in self.layer_dims})
        self._server_s[server_round] = self._server_s.get(server_round, 0.0) + time.perf_counter() - started

    def _sketch_nodes(self, grid: Grid) -> list[int]:
        available = list(grid.get_node_ids())
        if self.sketch_clients == "all":
            return available
        connected = set(available)
        nodes = [n for n in self.last_round_nodes if n in connected]
        if not nodes:  # e.g. a resume in a new engine, whose node ids differ
            log.warning("none of the last round's clients is connected; all %d clients sketch", len(available))
            return available
        return nodes

    def absorb_sketches(self, server_round: int, replies: Iterable[Message]) -> int:
        """Sum the good replies' Y, average their r by n, grow every layer's basis; returns replies used."""
        started = time.perf_counter()
        y_sum: dict[str, torch.Tensor] = {}
        rn: dict[str, float] = dict.fromkeys(self.layer_dims, 0.0)
        n_sum: dict[str, float] = dict.fromkeys(self.layer_dims, 0.0)
        used = sent_bytes = 0
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                log.warning("round %d: node %s failed its sketch, left out: %s", server_round, node,
                            first_line(reply.error.reason or ""))
                continue
            sent_bytes += record_nbytes(reply.content)  # uplink spent, whether usable or not
            reason = self.check_sketch_reply(reply.content)
            if reason:
                log.warning("round %d: sketch from node %s rejected: %s", server_round, node, reason)
                continue
            sketch, metrics = reply.content["sketch"], reply.content["metrics"]
            for name in self.layer_dims:
                y = torch.from_numpy(sketch[f"Y.{name}"].numpy().astype(np.float64))
                y_sum[name] = y_sum[name] + y if name in y_sum else y
                n = float(metrics[f"n.{name}"])
                rn[name] += float(metrics[f"r.{name}"]) * n
                n_sum[name] += n
            used += 1
        self._sketch_bytes[server_round] = self._sketch_bytes.get(server_round, 0) + sent_bytes
        self.sketch_bytes_total += sent_bytes
        self._sketch_clients[server_round] = used
        if not used:
            log.warning("round %d: no client sketched task %d; the FOT bases stay as they were",
                        server_round, self.task_index)
        self.grow_bases(y_sum, {name: rn[name] / n_sum[name] for name in y_sum})
        self._server_s[server_round] = self._server_s.get(server_round, 0.0) + time.perf_counter() - started
        return used

    def grow_bases(self, y_sum: dict[str, torch.Tensor], r_mean: dict[str, float]) -> None:
        """Add each layer's new principal directions (from the summed sketch) to its basis."""
        for name, y in y_sum.items():
            directions = new_directions(y, threshold(r_mean[name], self.eps))
            before = self.bases[name].shape[1] if name in self.bases else 0
            self.bases[name] = expand_basis(self.bases.get(name), directions)
            log.info("FOT %s: r̄=%.3f, +%d directions, basis %d/%d", name, r_mean[name],
                     self.bases[name].shape[1] - before, self.bases[name].shape[1], self.layer_dims[name])
        self.eps = min(1.0, self.eps + self.eps_inc)

    def check_sketch_reply(self, content: RecordDict) -> str | None:
        """Why a sketch reply cannot be used, or None."""
        if "sketch" not in content.array_records or "metrics" not in content.metric_records:
            return "expected an ArrayRecord 'sketch' and a MetricRecord 'metrics'"
        sketch, metrics = content["sketch"], content["metrics"]
        for name, d in self.layer_dims.items():
            key = f"Y.{name}"
            if key not in sketch:
                return f"no {key}"
            y = sketch[key].numpy()
            cols = self.sketch_cols or d
            if y.shape != (d, cols):
                return f"{key} has shape {y.shape}, expected {(d, cols)}"
            if not np.issubdtype(y.dtype, np.floating) or not np.isfinite(y).all():
                return f"{key} is not finite floating point"
            r, n = metrics.get(f"r.{name}"), metrics.get(f"n.{name}")
            if not isinstance(r, (int, float)) or not 0.0 <= r <= 1.0 + 1e-4:
                return f"r.{name}={r!r} is not a ratio in [0, 1]"
            if not isinstance(n, (int, float)) or not n > 0:
                return f"n.{name}={n!r} is not a positive count"
        return None

    # ---- resume and metrics ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"bases": {k: v.clone() for k, v in self.bases.items()}, "eps": self.eps,
                "task_index": self.task_index, "last_round_nodes": list(self.last_round_nodes),
                "sketch_bytes_total": self.sketch_bytes_total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        bases = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in state["bases"].items()}
        for name, u in bases.items():
            if self.layer_dims and u.shape[0] != self.layer_dims.get(name):
                raise ValueError(f"checkpoint's FOT basis for {name} has d={u.shape[0]}, but the model's "
                                 f"projected layers are {self.layer_dims}")
        self.bases = bases
        self.eps = float(state["eps"])
        self.task_index = int(state["task_index"])
        self.last_round_nodes = [int(n) for n in state["last_round_nodes"]]
        self.sketch_bytes_total = int(state.get("sketch_bytes_total", 0))

    def round_metrics(self, server_round: int) -> dict[str, float]:
        metrics = {"fot_basis_dim": sum(u.shape[1] for u in self.bases.values()), "fot_eps": self.eps,
                   "fot_sketch_bytes": self._sketch_bytes.get(server_round, 0),
                   "server_s": round(self._server_s.get(server_round, 0.0), 6)}
        if server_round in self._sketch_clients:
            metrics["fot_sketch_clients"] = self._sketch_clients[server_round]
        return metrics

    def summary_extra(self) -> dict[str, Any]:
        return {"fot": {"layer_dims": dict(self.layer_dims),
                        "basis_dims": {name: int(u.shape[1]) for name, u in self.bases.items()},
                        "eps": self.eps, "sketch_uplink_bytes": self.sketch_bytes_total}}


# ---- client half --------------------------------------------------------------------------------

def freeze(names: Iterable[str]) -> Callable[[nn.Module], None]:
    """An after_backward hook that drops the named parameters' gradients (SGD then skips them)."""
    frozen = set(names)

    def hook(model: nn.Module) -> None:
        for name, p in model.named_parameters():
            if name in frozen:
                p.grad = None

    return hook


class FotClient(WeightsClient):
    """Plain local SGD on the current task (biases frozen when told), plus the task-end sketch."""

    message_types: ClassVar[dict[str, str]] = {TRAIN: "train", EVALUATE: "evaluate", SKETCH: "sketch"}

    def after_backward(self, config: ConfigRecord) -> Callable[[nn.Module], None] | None:
        frozen = list(config.get("fot-frozen", []))
        return freeze(frozen) if frozen else None

    def secure_values(self, message: Message) -> dict[str, Any]:
        """Under secagg=true: the sketch sums (Y, r*n, n per layer), or the weighted update."""
        if message.metadata.message_type != SKETCH:
            return super().secure_values(message)
        reply = self.sketch(message)
        sketch, metrics = reply.content["sketch"], reply.content["metrics"]
        values: dict[str, Any] = {}
        for key, arr in sketch.items():
            name = key.removeprefix("Y.")
            n = float(metrics[f"n.{name}"])
            values[key] = arr.numpy().astype(np.float64)
            values[f"rn.{name}"] = np.asarray(float(metrics[f"r.{name}"]) * n)
            values[f"n.{name}"] = np.asarray(n)
        return values

    def sketch(self, message: Message) -> Message:
        config = message.content["config"]
        server_round = int(config["server-round"])
        layers = [str(n) for n in config["fot-layers"]]
        dtype = SKETCH_DTYPES[str(config["fot-sketch-dtype"])]
        bases = {k.removeprefix("basis."): torch.from_numpy(v.numpy()).float()
                 for k, v in message.content["bases"].items()}
        model = self.load_global(message)
        split = self.env.task.client_train(self.env.partition_id, int(config["task-id"]))
        # Q is private: seeded by this client and round, never sent.
        sketches = client_sketches(model, layers, split.x, bases, cols=int(config["fot-sketch-cols"]) or None,
                                   max_columns=int(config["fot-max-samples"]),
                                   seed=self.env.seed_for(server_round, "sketch"), device=self.env.device)
        arrays, metrics = ArrayRecord(), MetricRecord({"num-examples": len(split)})
        for name, (y, r, n) in sketches.items():
            y = y.numpy().astype(dtype)
            if not np.isfinite(y).all():
                raise ValueError(f"the sketch of {name} overflows {dtype.__name__}; use strategy.sketch_dtype=float32")
            arrays[f"Y.{name}"] = Array(y)
            metrics[f"r.{name}"] = float(r)
            metrics[f"n.{name}"] = int(n)
        return Message(RecordDict({"sketch": arrays, "metrics": metrics}), reply_to=message)


STRATEGY = StrategyDef(name="fot", server=FotServer, client=FotClient, config=FOTConfig,
                       description="Federated Orthogonal Training (Bakman et al., ICLR 2024)")
