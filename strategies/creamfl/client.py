"""CreamFL's client half: private training, the regularised public pass, public-set reps back."""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, Message

from data.captioned import ClientData, PairedSplit, captioned_of
from models.accel import autocast, make_optimizer, prepare_model, to_device_batch
from models.multimodal import ImageTextModel
from strategies.base import ClientHalf, derive_seed
from strategies.creamfl.config import CreamFLConfig
from strategies.creamfl.losses import info_nce, inter_modal_loss, intra_modal_loss
from strategies.creamfl.models import batches, build_client_model, encode_split, inputs_of
from strategies.creamfl.protocol import OTHER, STATE_KEY, pack_reply, parse_train
from strategies.messages import TRAIN


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """One optimizer step on `loss`; returns its value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


class CreamFLClient(ClientHalf):
    """The client half: private training, the regularised public pass, public-set reps back."""

    message_types: ClassVar[dict[str, str]] = {TRAIN: "train"}

    def train(self, message: Message) -> Message:
        env = self.env
        s: CreamFLConfig = env.strategy_config
        server_round, global_reps = parse_train(message)
        data = captioned_of(env.task)
        mine = data.client(env.partition_id)
        device = env.device
        torch.manual_seed(derive_seed(env.cfg["seed"], env.partition_id, "creamfl-client-init"))
        model = build_client_model(s, data, mine.modality, mine.num_classes)
        if STATE_KEY in env.state:
            model.load_state_dict(env.state[STATE_KEY].to_torch_state_dict())
        model = prepare_model(model, device)
        old = copy.deepcopy(model).eval()  # the previous round's model: the intra-modal negative
        for p in old.parameters():
            p.requires_grad_(False)
        global_reps = {k: v.to(device) for k, v in global_reps.items()}
        opt = make_optimizer("adamw", model.parameters(), s.client_lr, 0.0, 0.0, device)
        gen = torch.Generator().manual_seed(env.seed_for(server_round))
        private_loss = self._private(model, opt, mine, s, gen, device)
        public = data.public()
        keys = model.modalities
        reg_loss = 0.0
        if (s.inter or s.intra) and s.interintra_weight > 0:
            for _ in range(s.reg_passes):
                reg_loss = self._regularise(model, old, opt, public, keys, global_reps, s, gen, device)
        reps = {k: encode_split(model, public, k, device) for k in keys}
        env.state[STATE_KEY] = ArrayRecord({k: v.detach().cpu() for k, v in model.state_dict().items()})
        return pack_reply(message, reps, s.wire_dtype, num_examples=len(mine),
                          metrics={"train_loss": private_loss, "reg_loss": reg_loss})

    @staticmethod
    def _private(model: ImageTextModel, opt: torch.optim.Optimizer, mine: ClientData, s: CreamFLConfig,
                 gen: torch.Generator, device: torch.device) -> float:
        """The client's own task: classify (image- or text-only) or InfoNCE (image-text pairs)."""
        model.train()
        total, steps = 0.0, 0
        for _ in range(s.local_epochs):
            for idx in batches(len(mine), s.client_batch_size, gen):
                with autocast(device):
                    if mine.modality == "image_text":
                        if len(idx) < 2:
                            continue
                        assert mine.images is not None and mine.tokens is not None
                        zi = model.encode_image(to_device_batch(mine.images[idx], device))
                        zt = model.encode_text(mine.tokens[idx].to(device))
                    elif mine.modality == "image":
                        assert mine.images is not None
                        z = model.encode_image(to_device_batch(mine.images[idx], device))
                    else:
                        assert mine.tokens is not None
                        z = model.encode_text(mine.tokens[idx].to(device))
                if mine.modality == "image_text":
                    loss = info_nce(zi, zt, s.client_temperature)
                else:
                    loss = F.cross_entropy(model.classify(z), mine.labels[idx].to(device))
                total += _step(opt, loss)
                steps += 1
        return total / max(steps, 1)

    @staticmethod
    def _regularise(model: ImageTextModel, old: ImageTextModel, opt: torch.optim.Optimizer,
                    public: PairedSplit, keys: tuple[str, ...], global_reps: dict[str, torch.Tensor],
                    s: CreamFLConfig, gen: torch.Generator, device: torch.device) -> float:
        """One pass over the public set with the inter- and intra-modal contrast regularisers."""
        model.train()
        total, steps = 0.0, 0
        for idx in batches(len(public), s.client_batch_size, gen):
            idx_dev = idx.to(device)
            inter = torch.zeros((), device=device)
            intra = torch.zeros((), device=device)
            for key in keys:
                x = to_device_batch(inputs_of(public, key)[idx], device)
                with autocast(device):
                    z = model.encode(key, x)
                if s.inter:
                    inter = inter + inter_modal_loss(z, global_reps[OTHER[key]], idx_dev, s.inter_temperature)
                if s.intra:
                    with torch.no_grad(), autocast(device):
                        z_old = old.encode(key, x)
                    intra = intra + intra_modal_loss(z, global_reps[key][idx_dev], z_old,
                                                     s.intra_temperature) / len(keys)
            total += _step(opt, s.interintra_weight * (inter + intra))
            steps += 1
        return total / max(steps, 1)
