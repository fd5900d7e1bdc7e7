"""Federated strategies: one module per method, each with its server half and client half."""

from strategies.base import ClientEnv, ClientHalf, CorollaStrategy, ServerEnv, StrategyDef
from strategies.registry import (
    available_strategies,
    build_server_strategy,
    check_strategy_config,
    get_strategy,
)

__all__ = [
    "ClientEnv",
    "ClientHalf",
    "CorollaStrategy",
    "ServerEnv",
    "StrategyDef",
    "available_strategies",
    "build_server_strategy",
    "check_strategy_config",
    "get_strategy",
]
