"""A per-round progress bar showing the round's accuracy."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm


class RoundProgress:
    """tqdm over rounds; call it after every round with that round's metrics record."""

    def __init__(self, num_rounds: int, first_round: int = 1, label: str = "rounds") -> None:
        self.bar = tqdm(total=num_rounds, initial=first_round - 1, desc=label, unit="round",
                        dynamic_ncols=True, leave=True)

    def __call__(self, server_round: int, record: dict[str, Any]) -> None:
        self.bar.n = server_round
        postfix = {k: f"{record[k]:.3f}" for k in ("accuracy", "loss") if record.get(k) is not None}
        if record.get("num_failures"):
            postfix["failed"] = record["num_failures"]
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
