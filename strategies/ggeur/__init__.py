"""GGEUR (Dai et al., CVPR 2025): geometry-guided embedding augmentation in front of a base strategy.

"Geometric Knowledge-Guided Localized Global Distribution Alignment for Federated Learning".

Phases, all ordinary Flower messages (`protocol`):
1. Statistics (once, in round 1's ``configure_train``, before any training): every connected node
   gets a ``query.stats`` message and replies, per class, n_c, sum x and sum z z^T (sums, so
   secure aggregation could hide them). With ``reduce: pca`` a sketch exchange comes first (see
   `geometry`). A node that fails is logged and left out; the phase goes on.
2. The server pools the sums into each class's mean and covariance, eigen-decomposes, clamps
   negative eigenvalues and keeps the top-k eigenpairs: the class's geometric shape.
3. The geometry (and, on multi-domain tasks, the other domains' class prototypes) rides along
   with a node's first training message (and again whenever a node did not confirm it holds it);
   the client keeps it in Flower's ``Context.state``.
4. The base strategy (``strategy.base``: fedavg, fedprox or any registered one) then runs its rounds
   unchanged: its server half configures and aggregates, its client half trains, but on the local
   embeddings augmented by x' = x + sum_j eps_j sqrt(lambda_j) xi_j up to a target count per class
   (`augment`). The augmented set is deterministic in (run seed, partition, geometry) and cached
   in-process.

Not the official code's bugs: cross-entropy takes the logits once (the shared local loop), the
global model goes out each round (the base strategy), averaging is example-weighted (by real
counts unless ``weight_by: augmented``), ``amplify`` scales the largest eigenvalues, and no model is
selected on the test split.

Modules: `config` (GGEURConfig), `server` (GGEURServer), `client` (GGEURClient), `protocol` (the
message keys, each record's pack and parse), `geometry` and `augment` (the maths, no Flower).
"""

from __future__ import annotations

from strategies.ggeur.client import AUGMENTED, GGEURClient
from strategies.ggeur.config import GGEURConfig
from strategies.ggeur.server import GGEURServer
from strategies.registry import StrategyDef

STRATEGY = StrategyDef(name="ggeur", server=GGEURServer, client=GGEURClient, config=GGEURConfig,
                       description="GGEUR (Dai et al., 2025): geometry-guided embedding augmentation "
                                   "in front of a base strategy (strategy.base)")

__all__ = ["AUGMENTED", "STRATEGY", "GGEURClient", "GGEURConfig", "GGEURServer"]
