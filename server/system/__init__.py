"""Simulated real-world clients: availability, dropouts, speeds, bandwidths and a simulated clock."""

from server.system.config import SystemConfig, system_config
from server.system.world import RoundTiming, SystemModel, sim_time_summary, time_to_accuracy

__all__ = ["RoundTiming", "SystemConfig", "SystemModel", "sim_time_summary", "system_config",
           "time_to_accuracy"]
