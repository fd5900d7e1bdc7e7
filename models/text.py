"""Text encoders for captions: a small transformer on scaled_dot_product_attention, an embedding
bag, and a word-level tokenizer.

Inputs are word ids (n, L) with 0 as padding. Both encoders return (n, out_dim) features; the
multimodal wrappers (models/multimodal.py) project and L2-normalise them. On CUDA the attention
runs through PyTorch's fused kernels (flash / memory-efficient) via
`torch.nn.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PAD_ID, UNK_ID = 0, 1


class WordTokenizer:
    """Lower-cased whitespace words mapped through a fixed vocabulary (0 pad, 1 unknown)."""

    def __init__(self, vocab: Sequence[str], max_len: int = 16) -> None:
        if len(vocab) < 2:
            raise ValueError("the vocabulary needs at least the pad and unknown entries")
        self.vocab = tuple(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_len = int(max_len)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Word ids (n, max_len), padded with 0 and truncated to max_len."""
        out = torch.zeros(len(texts), self.max_len, dtype=torch.long)
        for r, text in enumerate(texts):
            ids = [self.index.get(w, UNK_ID) for w in text.lower().split()][:self.max_len]
            if ids:
                out[r, :len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [" ".join(self.vocab[i] for i in row.tolist() if i != PAD_ID) for row in ids]


class SelfAttention(nn.Module):
    """Multi-head self-attention through F.scaled_dot_product_attention with a padding mask."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"text dim {dim} must be a multiple of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        # keep: (n, L) True for real tokens; broadcast over heads and queries.
        mask = keep[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(n, length, dim))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), keep)
        return x + self.mlp(self.norm2(x))


class TransformerTextEncoder(nn.Module):
    """Token + position embeddings, `depth` transformer blocks, masked mean pooling."""

    def __init__(self, vocab_size: int, *, dim: int = 64, depth: int = 2, heads: int = 4,
                 max_len: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.pos = nn.Parameter(torch.zeros(1, max_len, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout=dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim
        self.max_len = max_len

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.long()[:, :self.max_len]
        keep = tokens != PAD_ID
        keep = keep | ~keep.any(1, keepdim=True)  # an empty caption attends to its padding
        x = self.embed(tokens) + self.pos[:, :tokens.shape[1]]
        for block in self.blocks:
            x = block(x, keep)
        x = self.norm(x)
        w = keep.unsqueeze(-1).to(x.dtype)
        return (x * w).sum(1) / w.sum(1)


class BagTextEncoder(nn.Module):
    """Mean of word embeddings (nn.EmbeddingBag, padding ignored), then a hidden layer."""

    def __init__(self, vocab_size: int, *, dim: int = 64, hidden: int = 128) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab_size, dim, mode="mean", padding_idx=PAD_ID)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.bag(tokens.long()))


TEXT_ENCODERS = ("transformer", "bag")


def build_text_encoder(kind: str, vocab_size: int, *, dim: int, depth: int = 2, heads: int = 4,
                       hidden: int = 128, max_len: int = 16) -> nn.Module:
    """`transformer` | `bag`; the module has `out_dim`."""
    if kind == "transformer":
        return TransformerTextEncoder(vocab_size, dim=dim, depth=depth, heads=heads, max_len=max_len)
    if kind == "bag":
        return BagTextEncoder(vocab_size, dim=dim, hidden=hidden)
    raise ValueError(f"unknown text encoder {kind!r}; valid choices: {', '.join(TEXT_ENCODERS)}")
