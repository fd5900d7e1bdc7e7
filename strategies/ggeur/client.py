"""GGEUR's client half: class statistics, then the base strategy's client half on augmented data."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message

from data import Split, TaskBundle
from strategies.base import ClientEnv, ClientHalf, derive_seed
from strategies.ggeur import geometry as geo
from strategies.ggeur import protocol as proto
from strategies.ggeur.augment import for_client, generate
from strategies.ggeur.config import GGEURConfig
from strategies.messages import EVALUATE, TRAIN
from strategies.registry import get_strategy

log = logging.getLogger("corolla")


class _Cache:
    """In-process LRU of augmented training sets, bounded in bytes ($COROLLA_GGEUR_CACHE_MB)."""

    def __init__(self) -> None:
        self.items: OrderedDict[tuple, Split] = OrderedDict()
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def budget(self) -> int:
        return int(float(os.environ.get("COROLLA_GGEUR_CACHE_MB", "2048")) * 2**20)

    def get(self, key: tuple) -> Split | None:
        with self.lock:
            split = self.items.get(key)
            if split is not None:
                self.items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return split

    def put(self, key: tuple, split: Split) -> None:
        with self.lock:
            self.items[key] = split
            while len(self.items) > 1 and sum(s.x.nbytes for s in self.items.values()) > self.budget:
                self.items.popitem(last=False)


AUGMENTED = _Cache()


@dataclasses.dataclass(frozen=True, eq=False)
class AugmentedTask(TaskBundle):
    """The task as the base client half sees it: one client's training split is the augmented one."""

    replaced: dict[tuple[int, int], Split] = dataclasses.field(default_factory=dict, repr=False)

    @staticmethod
    def of(task: TaskBundle, *, client_id: int, task_id: int, split: Split) -> "AugmentedTask":
        fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(TaskBundle) if f.init}
        return AugmentedTask(**fields, replaced={(client_id, task_id): split})

    def client_train(self, client_id: int, task_id: int = 0) -> Split:
        split = self.replaced.get((client_id, task_id))
        return split if split is not None else super().client_train(client_id, task_id)


def base_env(env: ClientEnv, config: GGEURConfig, *, task: Any = None,
             train: dict[str, Any] | None = None) -> ClientEnv:
    """The env the base client half runs in: its own strategy section (so ``strategy_config`` is the
    base's), optionally another task view and other training settings; the rest is ``env``'s."""
    view = copy.copy(env)
    view.__dict__.pop("strategy_config", None)  # cached from GGEUR's section: the base parses its own
    view.cfg = {**env.cfg, "strategy": config.base_section(), **({"train": train} if train else {})}
    if task is not None:
        view.task = task
    return view


class GGEURClient(ClientHalf):
    """Class statistics, then the base strategy's client half on augmented local embeddings."""

    message_types: ClassVar[dict[str, str]] = {proto.STATS: "stats", TRAIN: "train", EVALUATE: "evaluate"}

    @property
    def config(self) -> GGEURConfig:
        return self.env.strategy_config

    def base_client(self, env: ClientEnv | None = None) -> ClientHalf:
        return get_strategy(self.config.base).client(env if env is not None else base_env(self.env, self.config))

    def handle(self, message: Message) -> Message:
        from strategies.secagg.client import MESSAGE_TYPES as SECAGG_STEPS

        if message.metadata.message_type in self.message_types or message.metadata.message_type in SECAGG_STEPS:
            return super().handle(message)
        return self.base_client().handle(message)  # the base's own extra phases, if any

    def secure_values(self, message: Message) -> dict[str, Any]:
        """Under secagg=true: the statistics phase's sums, or the weighted update of the augmented training."""
        from strategies.ggeur.secure import client_values
        from strategies.secagg.client import SECAGG
        from strategies.secagg.strategy import weighted_update

        if message.metadata.message_type == proto.STATS:
            return client_values(self, message)
        record = message.content.config_records[SECAGG]
        del message.content[SECAGG]  # the base client half trains: it must not mask the reply itself
        try:
            reply = self.train(message)
        finally:
            message.content[SECAGG] = record
        if reply.has_error():
            raise RuntimeError(f"ggeur: local training failed: {reply.error.reason}")
        return weighted_update(message, reply)

    # ---- statistics -------------------------------------------------------------------------
    def _features(self, task_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
        split = self.env.task.client_train(self.env.partition_id, task_id)
        return split.x.reshape(len(split), -1).numpy(), split.y.numpy()

    def stats(self, message: Message) -> Message:
        query = proto.parse_query(message.content)
        x, y = self._features(query.task_id)
        d = x.shape[1]
        pid = self.env.partition_id
        if query.phase == "sketch":
            n, s1, yk = geo.sketch_sums(x, geo.sketch_matrix(d, query.sketch_cols, query.seed))
            return Message(proto.pack_sketch(n, s1, yk, partition=pid), reply_to=message)
        r = query.dim if query.dim is not None else d
        basis = self._basis(query.reduce, d, r, query.seed, query.basis)
        sums = geo.class_sums(x, y, int(self.env.task.num_classes), basis)
        content = proto.pack_stats(sums, partition=pid, domain=self.env.task.client_domain(pid) or "",
                                   dtype=query.dtype, num_examples=int(len(y)))
        return Message(content, reply_to=message)

    @staticmethod
    def _basis(reduce: str, d: int, r: int, seed: int, sent: np.ndarray | None) -> np.ndarray | None:
        if reduce == "none":
            return None
        if reduce == "random":
            return geo.random_basis(d, r, seed)
        if sent is None or sent.shape != (d, r):
            raise ValueError(f"ggeur: the PCA basis is missing or has the wrong shape (want {(d, r)})")
        return sent.astype(np.float64)

    # ---- training on the augmented set ----------------------------------------------------------
    def train(self, message: Message) -> Message:
        content = message.content
        config = content["config"]
        task_id = int(config.get("task-id", 0))
        proto.keep_geometry(content, self.env.state)  # the server sends it until we confirm it
        want = str(config.get(proto.DIGEST_KEY, ""))
        held = proto.held_geometry(self.env.state, want)
        real = self.env.task.client_train(self.env.partition_id, task_id)
        if held is not None:
            split = self.augmented(task_id, *held)
        else:
            log.warning("ggeur: client %d holds no geometry %s; training on its real data only",
                        self.env.partition_id, want)
            split = real
        train = None
        if self.config.local_steps == "real" and len(real):
            # The augmented set reshapes what the client learns from, not how far it drifts:
            # as many optimizer steps as its real data would take.
            train = dict(self.env.cfg["train"])
            steps = int(train.get("epochs", 1)) * -(-len(real) // int(train.get("batch_size", 32)))
            if train.get("max_steps") is not None:
                steps = min(steps, int(train["max_steps"]))
            train["max_steps"] = steps
        task = AugmentedTask.of(self.env.task, client_id=self.env.partition_id, task_id=task_id, split=split)
        reply = self.base_client(base_env(self.env, self.config, task=task, train=train)).handle(message)
        if reply.has_error():
            return reply
        metrics = next(iter(reply.content.metric_records.values()))
        weight = len(split) if self.config.weight_by == "augmented" else len(real)
        proto.mark_train_reply(metrics, num_examples=weight, real=len(real), augmented=len(split),
                               has_geometry=held is not None)
        return reply

    def evaluate(self, message: Message) -> Message:
        return self.base_client().handle(message)

    def augmented(self, task_id: int, geometry: ArrayRecord, meta: ConfigRecord) -> Split:
        """This client's real samples plus the generated ones (cached in-process)."""
        digest = str(meta["digest"])
        key = (self.env.context.run_id, self.env.partition_id, task_id, digest, int(self.env.cfg["seed"]))
        cached = AUGMENTED.get(key)
        if cached is not None:
            return cached
        x, y = self._features(task_id)
        rng = np.random.default_rng(derive_seed(self.env.cfg["seed"], self.env.partition_id, digest,
                                                "ggeur-augment"))
        payload = for_client(proto.parse_geometry(geometry, meta), held={int(c) for c in np.unique(y)},
                             domain=self.env.task.client_domain(self.env.partition_id) or "")
        new_x, new_y = generate(x, y, payload, rng)
        split = Split(torch.from_numpy(np.concatenate([x, new_x]).astype(np.float32)),
                      torch.from_numpy(np.concatenate([y, new_y]).astype(np.int64)))
        shape = tuple(self.env.task.input_shape)
        if len(shape) > 1:  # image-shaped inputs (raw pixels): back to the model's input shape
            split = Split(split.x.reshape(len(split), *shape), split.y)
        AUGMENTED.put(key, split)
        return split
