"""Data the tests write to disk: image folders, the breast-cancer CSV, saved HF datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def class_image(label: int, rng: np.random.Generator, size: int = 16, mode: str = "RGB") -> Image.Image:
    """A noisy image whose class shows as a bright horizontal band at a class-specific height."""
    pixels = rng.integers(0, 90, size=(size, size, 3)).astype(np.int32)
    band = max(1, size // 6)
    top = int(label * (size - band) / 4)
    pixels[top:top + band, :, label % 3] += 150
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.convert(mode)


def image_folder(root: Path, *, classes: list[str] | None = None, per_class: int = 24, size: int = 16,
                 seed: int = 0, suffix: str = ".png", mode: str = "RGB") -> Path:
    """<root>/<class>/<i>.png for each class (default: five classes c0..c4)."""
    rng = np.random.default_rng(seed)
    for name in classes or [f"c{i}" for i in range(5)]:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        label = int(name[1:]) if name[1:].isdigit() else 0
        for i in range(per_class):
            class_image(label, rng, size, mode).save(folder / f"{i}{suffix}")
    return root


def breast_cancer_csv(path: Path, *, sites: int = 3) -> Path:
    """scikit-learn's breast-cancer data as a CSV: text labels, a categorical and a `site` column."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(0)
    frame["site"] = [f"hospital-{i}" for i in rng.integers(0, sites, len(frame))]
    frame["scanner"] = rng.choice(["old", "new"], len(frame))
    frame["diagnosis"] = frame.pop("target").map({0: "malignant", 1: "benign"})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
