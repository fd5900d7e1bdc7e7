"""StrategyWrapper: a Flower Strategy that holds a server half and forwards corolla's hooks to it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy


class StrategyWrapper(Strategy):
    """Forwards every corolla hook and the evaluation half to `inner`; subclasses change training.

    `secagg=true` (strategies/secagg/strategy.py) and `privacy=<mode>` (strategies/privacy/server.py)
    wrap a server half this way. What a wrapper adds to a round's metrics goes in
    `round_extras[server_round]`.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.round_extras: dict[int, dict[str, float]] = {}

    # corolla's hooks ---------------------------------------------------------------------------
    def setup(self, env: Any) -> None:
        self.inner.setup(env)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def validate_train_reply(self, content: RecordDict, sent: ArrayRecord) -> str | None:
        return self.inner.validate_train_reply(content, sent)

    def initial_arrays(self, default: ArrayRecord) -> ArrayRecord:
        return self.inner.initial_arrays(default)

    def evaluate_global(self, server_round: int, arrays: ArrayRecord) -> dict[str, Any] | None:
        return self.inner.evaluate_global(server_round, arrays)

    def round_metrics(self, server_round: int) -> dict[str, float]:
        return {**self.inner.round_metrics(server_round), **self.round_extras.get(server_round, {})}

    def summary_extra(self) -> dict[str, Any]:
        return self.inner.summary_extra()

    def summary(self) -> None:
        self.inner.summary()

    @property
    def max_num_examples(self) -> int:
        return self.inner.max_num_examples

    @max_num_examples.setter
    def max_num_examples(self, value: int) -> None:
        self.inner.max_num_examples = value

    # Flower's Strategy: training is the subclass's; evaluation is the inner half's --------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.inner.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)
