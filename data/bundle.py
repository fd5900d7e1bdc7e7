"""Split and TaskBundle: a task's data kept as uint8 (or features) and materialised on demand."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class Split:
    """Model-ready samples: float32 inputs (n, C, H, W) or (n, d) and int64 labels (n,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Store:
    """Compact samples shared by all views: uint8 images (n, C, H, W) or float32 features (n, d)."""

    x: np.ndarray
    y: np.ndarray

    @property
    def is_images(self) -> bool:
        """True for uint8 images, False for encoder features."""
        return self.x.dtype == np.uint8


@dataclass(frozen=True)
class TaskData:
    """One task of a bundle (the only one unless continual) as indices into the stores."""

    clients: list[np.ndarray]  # per client: indices into the train store
    val: np.ndarray  # indices into the train store
    test: np.ndarray  # indices into the test store
    permutation: np.ndarray | None = None  # pixel order (H*W) applied when materialising
    local_tests: list[np.ndarray] | None = None  # per client: its own test indices (train store)


@dataclass(frozen=True)
class Normalisation:
    """Per-channel mean and std of a dataset's training images in [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @staticmethod
    def of(images: np.ndarray) -> Normalisation:
        """Exact statistics of uint8 images (n, C, H, W) from per-channel histograms."""
        values = np.arange(256, dtype=np.float64) / 255.0
        means, stds = [], []
        for c in range(images.shape[1]):
            counts = np.bincount(images[:, c].ravel(), minlength=256).astype(np.float64)
            mean = float(counts @ values / counts.sum())
            var = float(counts @ (values - mean) ** 2 / counts.sum())
            means.append(mean)
            stds.append(max(var**0.5, 1e-6))
        return Normalisation(tuple(means), tuple(stds))


@dataclass(frozen=True, eq=False)
class TaskBundle:
    """Everything a server or client needs about one task: shapes, scenario and data splits."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    num_clients: int
    num_tasks: int
    scenario: str
    task_classes: list[list[int]]
    domains: list[str]
    train_store: Store = field(repr=False)
    test_store: Store = field(repr=False)
    tasks: list[TaskData] = field(repr=False)
    normalisation: Normalisation | None = None  # None when the inputs are features
    client_domains: list[str] | None = field(default=None, repr=False)
    test_domains: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def client_train(self, client_id: int, task_id: int = 0) -> Split:
        """The training data of one client for one task."""
        task = self._task(task_id)
        if not 0 <= client_id < self.num_clients:
            raise IndexError(f"client_id {client_id} out of range [0, {self.num_clients})")
        return self._split(self.train_store, task.clients[client_id], task.permutation)

    def client_test(self, client_id: int, task_id: int = 0) -> Split:
        """A client's own test split (federated evaluation); empty when the task keeps none."""
        task = self._task(task_id)
        if not 0 <= client_id < self.num_clients:
            raise IndexError(f"client_id {client_id} out of range [0, {self.num_clients})")
        idx = task.local_tests[client_id] if task.local_tests else np.zeros(0, dtype=np.int64)
        return self._split(self.train_store, idx, task.permutation)

    def client_size(self, client_id: int, task_id: int = 0) -> int:
        """Number of training samples of a client, without materialising them."""
        task = self._task(task_id)
        if not 0 <= client_id < self.num_clients:
            raise IndexError(f"client_id {client_id} out of range [0, {self.num_clients})")
        return len(task.clients[client_id])

    def client_domain(self, client_id: int) -> str | None:
        """The domain a client's data comes from (multi-domain tasks), else None."""
        if not 0 <= client_id < self.num_clients:
            raise IndexError(f"client_id {client_id} out of range [0, {self.num_clients})")
        return self.client_domains[client_id] if self.client_domains else None

    def val(self, task_id: int = 0) -> Split:
        """Validation data carved from the training set before partitioning (no client has it)."""
        task = self._task(task_id)
        return self._split(self.train_store, task.val, task.permutation)

    def test(self, task_id: int = 0) -> Split:
        """The held-out test split of a task; it never depends on the run's seed."""
        task = self._task(task_id)
        return self._split(self.test_store, task.test, task.permutation)

    def test_by_domain(self) -> dict[str, Split]:
        """Per-domain test splits of a multi-domain task; {} otherwise."""
        return {
            name: self._split(self.test_store, idx, None) for name, idx in self.test_domains.items()
        }

    def train_pool(self, task_id: int = 0) -> Split:
        """All clients' training data of a task pooled (for centralised baselines)."""
        task = self._task(task_id)
        return self._split(self.train_store, np.concatenate(task.clients), task.permutation)

    def _task(self, task_id: int) -> TaskData:
        if not 0 <= task_id < self.num_tasks:
            raise IndexError(f"task_id {task_id} out of range [0, {self.num_tasks})")
        return self.tasks[task_id]

    def _split(self, store: Store, idx: np.ndarray, permutation: np.ndarray | None) -> Split:
        y = torch.from_numpy(store.y[idx].astype(np.int64))
        if not store.is_images:
            return Split(torch.from_numpy(store.x[idx].astype(np.float32)), y)
        x = torch.from_numpy(store.x[idx]).to(torch.float32).div_(255.0)
        if permutation is not None:
            n, c, h, w = x.shape
            x = x.reshape(n, c, h * w)[:, :, torch.from_numpy(permutation)].reshape(n, c, h, w)
        if self.normalisation is not None:
            mean = torch.tensor(self.normalisation.mean).view(1, -1, 1, 1)
            std = torch.tensor(self.normalisation.std).view(1, -1, 1, 1)
            x = x.sub_(mean).div_(std)
        return Split(x, y)
