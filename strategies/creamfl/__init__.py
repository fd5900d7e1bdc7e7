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
6. it distils the aggregate into its model (squared distance per item, `kd_weight`; each
   modality's term once) by plain SGD steps of their own (`distill_lr`; no state shared with the
   public steps' AdamW, so kd_weight scales each step and 0 means training alone) and is
   evaluated on test retrieval (Recall@1/5/10 both ways, rsum) every round.

Beyond the paper (each off by default, so the defaults are the published method):
`ensemble_temperature` sharpens the weights, `reg_passes` repeats the regulariser pass,
`distill_order: before_public` distils before the next public step, `kd_gate` keeps only
aggregated reps that are better aligned than the server's own (`item`) or scales the term by the
aggregate's measured alignment (`alignment`), and `distill_mode: joint` adds the distillation to
the public InfoNCE steps instead of taking separate optimizer steps on it. `align_holdout` holds a
fraction of the public pairs out of the distillation and measures each client's alignment on them
(recorded per client type); `kd_clients: aligned` distils only clients above `align_min`,
`kd_client_weights: alignment` weights clients by it; `kd_normalise` renormalises the aggregate;
`kd_loss: crossmodal` distils image-text clients' in-batch image-text matching.
Diagnostics: every round records the targets' length and cosine to the server's own reps
(`kd_target_norm_<key>`, `kd_target_cos_<key>`); `distill_probe` also records the validation
rsum the separate distillation steps gained or cost (`distill_val_rsum_delta`).
Baselines through the same code: `fraction_train: 0` trains the server alone (public-only);
with `server_data: all` it also trains on every client's private pairs (the centralised bound).

The package: `config` (CreamFLConfig, every setting; defaults in conf/strategy/creamfl.yaml),
`protocol` (message keys, pack and parse), `losses` (the maths, no Flower), `alignment` (held-out
items, per-client alignment, selection and weights), `models` (towers and
public-set encoding), `training` (the server model's own steps), `server` and `client` (the halves).
"""

from strategies.base import StrategyDef
from strategies.creamfl.client import CreamFLClient
from strategies.creamfl.config import CreamFLConfig
from strategies.creamfl.models import batches, build_client_model, build_server_model, encode_split
from strategies.creamfl.protocol import MODALITY_KEYS
from strategies.creamfl.server import CreamFLServer

STRATEGY = StrategyDef(
    name="creamfl", server=CreamFLServer, client=CreamFLClient, config=CreamFLConfig,
    description="CreamFL (Yu et al., ICLR 2023): multimodal FL by a contrastive representation ensemble",
)

__all__ = [
    "MODALITY_KEYS", "STRATEGY", "CreamFLClient", "CreamFLConfig", "CreamFLServer", "batches",
    "build_client_model", "build_server_model", "encode_split",
]
