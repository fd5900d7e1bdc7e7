"""server.grid tells a SuperLink's grid from a simulation's, and shortens only the simulation's polling."""

from __future__ import annotations

import subprocess
import sys

from flwr.superlink.grid.http_grid import HttpGrid
from flwr.superlink.grid.inmemory_grid import InMemoryGrid

from server.grid import SIM_PULL_INTERVAL_S, is_deployed, poll_faster_in_simulation
from simulation.inline import InlineGrid


def test_a_superlink_grid_is_deployed_and_keeps_its_polling() -> None:
    grid = HttpGrid(token="t")  # connects lazily: nothing is dialled here
    assert is_deployed(grid)
    poll_faster_in_simulation(grid)
    assert not hasattr(grid, "pull_interval")


def test_the_simulation_grid_polls_faster_and_is_not_deployed() -> None:
    class Factory:  # the grid asks it for a state on construction; polling never runs here
        def state(self) -> None:
            return None

    grid = InMemoryGrid(state_factory=Factory())  # type: ignore[arg-type]
    assert grid.pull_interval == 0.1  # Flower's default, which the test would otherwise not notice moving
    poll_faster_in_simulation(grid)
    assert grid.pull_interval == SIM_PULL_INTERVAL_S
    assert not is_deployed(grid)


def test_the_inline_grid_is_not_deployed() -> None:
    assert InlineGrid.__module__ == "simulation.inline"
    assert not is_deployed(object.__new__(InlineGrid))


def test_checking_a_grid_does_not_import_flowers_http_grid() -> None:
    code = ("import sys; from server.grid import is_deployed; is_deployed(object()); "
            "print('flwr.superlink.grid.http_grid' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
