"""Per-client alignment on held-out public pairs, and the client selection and weights it drives.

A client's alignment for one modality is the R@1 of its representations of the held-out public
items against the server's representations of the other modality (a hit: the same caption). The
held-out items are never distillation targets, so the measure is not what the distillation fits.
"""

from __future__ import annotations

import torch

from strategies.creamfl.losses import alignment_r1


def held_out_items(public_size: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """A boolean mask (public_size,) of the held-out public items: round(fraction * size), at
    least one when fraction > 0, never all of them."""
    if fraction <= 0:
        return torch.zeros(public_size, dtype=torch.bool)
    n = min(public_size - 1, max(1, round(fraction * public_size)))
    mask = torch.zeros(public_size, dtype=torch.bool)
    mask[torch.randperm(public_size, generator=generator)[:n]] = True
    return mask


def client_alignment(stacked: torch.Tensor, other: torch.Tensor, ids: torch.Tensor,
                     items: torch.Tensor) -> torch.Tensor:
    """(K,) R@1 of each client's reps (K, P, D) of `items` against the server's other-modality
    reps (P, D) of the same items; `ids` are the public caption ids (P,)."""
    sel_ids, sel_other = ids[items], other[items]
    return torch.tensor([alignment_r1(rep[items], sel_other, sel_ids) for rep in stacked])


def select_clients(alignment: torch.Tensor, min_r1: float) -> torch.Tensor:
    """Clients (a boolean (K,)) whose held-out alignment R@1 is at least `min_r1`."""
    return alignment >= min_r1


def alignment_weights(alignment: torch.Tensor, num_items: int) -> torch.Tensor | None:
    """Per-client weights (K, P), proportional to each client's alignment and the same for every
    item; None when no client aligns at all."""
    total = float(alignment.sum())
    if total <= 0:
        return None
    return (alignment / total).unsqueeze(1).expand(-1, num_items).contiguous()
