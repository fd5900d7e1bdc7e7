"""The client half of `privacy=client-*|local`: Flower's client mods around the training handler."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp.mod import LocalDpMod, adaptiveclipping_mod, fixedclipping_mod

from strategies.messages import TRAIN
from strategies.privacy.config import PrivacyConfig, parse_privacy

Handler = Callable[[Message, Context], Message]


def train_mod(config: PrivacyConfig) -> Callable[[Message, Context, Handler], Message] | None:
    """Flower's mod for the mode: fixedclipping_mod, adaptiveclipping_mod or LocalDpMod (None: none)."""
    if config.name == "client-fixed":
        return fixedclipping_mod
    if config.name == "client-adaptive":
        return adaptiveclipping_mod
    if config.name == "local":
        return LocalDpMod(config.clipping_norm, config.local_sensitivity, config.local_epsilon, config.local_delta)
    return None


def handle(message: Message, context: Context, handler: Callable[[Message], Message], *, cfg: dict[str, Any],
           noise_seed: Callable[[int], int]) -> Message:
    """`handler(message)`, through the privacy mode's Flower mod when the message is a training one.

    The mods run here rather than as `ClientApp(mods=...)` because the mode is known only from the
    run's config, per message; the in-process bench grid calls this same path.
    """
    config = parse_privacy(cfg.get("privacy"))
    mod = train_mod(config) if message.metadata.message_type == TRAIN else None
    if mod is None:
        return handler(message)
    if config.name == "local":  # LocalDpMod draws from numpy's global RNG: seeded per client and round
        np.random.seed(noise_seed(int(message.content["config"].get("server-round", 0))))
    return mod(message, context, lambda msg, _ctx: handler(msg))
