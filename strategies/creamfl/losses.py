"""CreamFL's math on tensors: contrastive losses, the representation ensemble, retrieval recall.

No Flower and no models here, so every piece is testable on small hand-made tensors.
Representations are rows of unit vectors; item i of every (P, D) matrix is public pair i.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RECALL_KS = (1, 5, 10)


def info_nce(img: torch.Tensor, txt: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of paired unit vectors (n, D): mean of image->text and text->image CE."""
    logits = img @ txt.T / temperature
    target = torch.arange(len(img), device=img.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def squared_distance(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over items of ||z_i - target_i||^2 (b, D): a per-item loss, in [0, 4] for unit vectors."""
    return (z.float() - target.float()).pow(2).sum(-1).mean()


def inter_modal_loss(local: torch.Tensor, global_other: torch.Tensor, index: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """CE of a client's reps of items `index` against all global reps of the other modality.

    local: (b, D) the client's representations of public items `index`; global_other: (P, D).
    Target of row r is `index[r]`: a client image rep should pick its own caption's global rep.
    """
    return F.cross_entropy(local @ global_other.T / temperature, index)


def intra_modal_loss(local: torch.Tensor, global_same: torch.Tensor, old_local: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """MOON-style contrast: positive the global rep of the same item and modality, negative the
    client's previous-round rep of it. All (b, D); CE over [pos, neg] with target 0."""
    pos = (local * global_same).sum(-1)
    neg = (local * old_local).sum(-1)
    logits = torch.stack([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(local), dtype=torch.long, device=local.device))


def ensemble_scores(local: torch.Tensor, global_other: torch.Tensor) -> torch.Tensor:
    """s[k, i] = log-softmax over j of <local[k, i], global_other[j]>, taken at j = i.

    local: (K, P, D) the K clients' reps of one modality; global_other: (P, D). Returns (K, P).
    """
    logits = torch.einsum("kpd,qd->kpq", local.float(), global_other.float())
    return torch.diagonal(torch.log_softmax(logits, dim=-1), dim1=1, dim2=2)


def ensemble_weights(local: torch.Tensor, global_other: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """w[k, i] = softmax over clients k of s[k, i] / temperature (temperature 1: as published)."""
    return torch.softmax(ensemble_scores(local, global_other) / temperature, dim=0)


def aggregate(local: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """sum_k w[k, i] local[k, i] (the uniform mean when weights is None). Returns (P, D)."""
    if weights is None:
        return local.float().mean(0)
    return (weights.unsqueeze(-1) * local.float()).sum(0)


def weight_spread(weights: torch.Tensor) -> dict[str, float]:
    """How far the ensemble weights are from uniform: mean over items of max-min, and of the
    normalised entropy (1 = uniform)."""
    k = weights.shape[0]
    if k < 2:
        return {"spread": 0.0, "entropy": 1.0}
    spread = (weights.max(0).values - weights.min(0).values).mean()
    entropy = -(weights.clamp_min(1e-12).log() * weights).sum(0) / torch.log(torch.tensor(float(k)))
    return {"spread": float(spread), "entropy": float(entropy.mean())}


def recall_at_k(query: torch.Tensor, gallery: torch.Tensor, query_ids: torch.Tensor,
                gallery_ids: torch.Tensor, ks: tuple[int, ...] = RECALL_KS) -> dict[int, float]:
    """Fraction of queries with a gallery item of the same id among their top k by dot product."""
    sims = query.float() @ gallery.float().T
    kmax = min(max(ks), gallery.shape[0])
    top = sims.topk(kmax, dim=1).indices                      # (n, kmax)
    hits = gallery_ids[top] == query_ids.unsqueeze(1)         # (n, kmax)
    first = torch.where(hits.any(1), hits.float().argmax(1), torch.full_like(query_ids, kmax))
    return {k: float((first < k).float().mean()) for k in ks}


def retrieval_metrics(img: torch.Tensor, txt: torch.Tensor, caption_ids: torch.Tensor,
                      ks: tuple[int, ...] = RECALL_KS) -> dict[str, float]:
    """Image->text and text->image Recall@k, a hit being an item whose caption equals the query's
    own caption; rsum is the sum of the six recalls (fractions)."""
    i2t = recall_at_k(img, txt, caption_ids, caption_ids, ks)
    t2i = recall_at_k(txt, img, caption_ids, caption_ids, ks)
    out = {f"i2t_r{k}": i2t[k] for k in ks}
    out.update({f"t2i_r{k}": t2i[k] for k in ks})
    out["rsum"] = sum(i2t.values()) + sum(t2i.values())
    return out


def alignment_r1(local: torch.Tensor, global_other: torch.Tensor, ids: torch.Tensor | None = None) -> float:
    """R@1 of each local rep of item i against the global reps of the other modality (hit: the
    same item, or the same caption when `ids` is given)."""
    ids = torch.arange(len(local)) if ids is None else ids
    return recall_at_k(local, global_other, ids, ids, (1,))[1]


def relational_kd_loss(server: torch.Tensor, local: torch.Tensor, temperature: float,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """KL from the clients' in-batch similarity structure to the server's (rotation-invariant).

    server: (b, D) the server's reps of b public items; local: (K, b, D) the clients' reps of the
    same items; weights: (K, b) per-client, per-item weights (None: uniform). Row r of client k's
    target is softmax_j(<local_k,r, local_k,j> / T) over the other items j != r; the rows are
    averaged over clients (weighted) and the server's rows are matched by KL. Unlike an MSE to
    averaged reps, this needs no client to live in the server's coordinates: clients agree on
    which items are alike even when their spaces are rotated against each other and the server's.
    """
    b = server.shape[0]
    off = ~torch.eye(b, dtype=torch.bool, device=server.device)
    sims = torch.einsum("kbd,kcd->kbc", local.float(), local.float()) / temperature
    sims = sims.masked_fill(~off, float("-inf"))
    target = torch.softmax(sims, dim=-1)                                       # (K, b, b)
    if weights is None:
        target = target.mean(0)
    else:
        w = weights / weights.sum(0, keepdim=True).clamp_min(1e-12)
        target = (w.unsqueeze(-1) * target).sum(0)
    logq = torch.log_softmax((server.float() @ server.float().T / temperature).masked_fill(~off, float("-inf")), dim=-1)
    kl = target * (target.clamp_min(1e-12).log() - logq.masked_fill(~off, 0.0))
    return kl.masked_fill(~off, 0.0).sum(-1).mean()


def crossmodal_kd_loss(img: torch.Tensor, txt: torch.Tensor, local_img: torch.Tensor, local_txt: torch.Tensor,
                       temperature: float) -> torch.Tensor:
    """KL from image-text clients' in-batch image-text matching to the server's, both directions.

    img, txt: (b, D) the server's reps of b public pairs; local_img, local_txt: (K, b, D) the K
    image-text clients' reps of the same pairs. The target row r is the clients' mean of
    softmax_j(<img_k,r, txt_k,j> / T) (and the same for text -> image): soft InfoNCE labels that
    carry what the clients learnt from their private pairs about which captions match which
    images, with no need for the clients' space to be the server's (only each client's own
    image-text geometry is used).
    """
    logits_k = torch.einsum("kbd,kcd->kbc", local_img.float(), local_txt.float()) / temperature
    logits = img.float() @ txt.float().T / temperature
    loss = torch.zeros((), device=img.device)
    for target_logits, server_logits in ((logits_k, logits), (logits_k.transpose(1, 2), logits.T)):
        target = torch.softmax(target_logits, dim=-1).mean(0)
        logq = torch.log_softmax(server_logits, dim=-1)
        loss = loss + 0.5 * (target * (target.clamp_min(1e-12).log() - logq)).sum(-1).mean()
    return loss
