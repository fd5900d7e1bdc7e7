"""Run plots name strategy, task and seed; single-task runs have no task legend."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from conf.compose import compose
from server.plots import accuracy_figure, write_plots
from server.recorder import plot_title


def test_single_task_plot_has_a_title_and_no_task_legend(tmp_path: Path) -> None:
    title = plot_title(compose(["strategy=fedprox", "task=digits", "model=mlp", "seed=4"]))
    assert title == "fedprox on digits (mlp), seed 4"
    history = [{"round": r, "accuracy": 0.5 + r / 10, "loss": 1.0 / r} for r in (1, 2)]
    fig = accuracy_figure(history, title=title)
    assert fig._suptitle.get_text() == title
    assert fig.axes[0].get_legend() is None
    plt.close(fig)
    write_plots(tmp_path, history, [], title=title)
    assert (tmp_path / "accuracy.png").stat().st_size > 5000


def test_continual_plot_has_one_legend_entry_per_task() -> None:
    history = [{"round": r, "accuracy": 0.5, "loss": 1.0, "task_accuracy": [0.5] * r} for r in (1, 2)]
    fig = accuracy_figure(history, title="fot on permuted-digits (mlp), seed 0")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["mean over seen tasks", "task 0", "task 1"]
    plt.close(fig)
