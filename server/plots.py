"""Plots of a run: accuracy/loss per round, per-task accuracy, and the continual accuracy matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def write_plots(out: Path, history: list[dict[str, Any]], matrix: list[list[float]], *, title: str = "") -> None:
    """Write plots/*.png for a finished run; `title` names strategy, task and seed."""
    fig = accuracy_figure(history, title=title)
    if fig is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "accuracy.png", dpi=100)
    plt.close(fig)
    if matrix:
        fig = matrix_figure(matrix, title=title)
        fig.savefig(out / "continual_matrix.png", dpi=100)
        plt.close(fig)


def accuracy_figure(history: list[dict[str, Any]], *, title: str = "") -> Any:
    """Accuracy (with one line per task for continual runs) and loss per round; None without rounds."""
    history = [r for r in history if r.get("accuracy") is not None and r.get("loss") is not None]
    if not history:
        return None
    rounds = [r["round"] for r in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    multi_task = "task_accuracy" in history[0]
    ax_acc.plot(rounds, [r["accuracy"] for r in history], marker="o",
                label="mean over seen tasks" if multi_task else "test accuracy")
    if multi_task:
        num_tasks = max(len(r["task_accuracy"]) for r in history)
        for t in range(num_tasks):
            pts = [(r["round"], r["task_accuracy"][t]) for r in history if len(r["task_accuracy"]) > t]
            ax_acc.plot(*zip(*pts), linestyle="--", label=f"task {t}")
    ax_acc.set(xlabel="round", ylabel="test accuracy", ylim=(0, 1), title="accuracy")
    if multi_task:  # one line needs no legend
        ax_acc.legend(fontsize="small")
    ax_loss.plot(rounds, [r["loss"] for r in history], marker="o", color="tab:red")
    ax_loss.set(xlabel="round", ylabel="test loss", title="loss")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def matrix_figure(matrix: list[list[float]], *, title: str = "") -> Any:
    """The continual accuracy matrix A[t][i] as a heat map."""
    fig, ax = plt.subplots(figsize=(5, 4))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    for t, row in enumerate(matrix):
        for i, v in enumerate(row):
            if v == v:  # not NaN
                ax.text(i, t, f"{v:.2f}", ha="center", va="center", color="w", fontsize=8)
    ax.set(xlabel="evaluated on task i", ylabel="after training task t",
           title=f"accuracy matrix A[t][i]\n{title}" if title else "accuracy matrix A[t][i]")
    fig.colorbar(im)
    fig.tight_layout()
    return fig
