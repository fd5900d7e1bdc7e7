"""Write example data for docs/your-data.md: image folders (one box or three sites) and a CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

# Three sites with different class mixes and image sizes (docs/your-data.md, step 3).
SITES = {"site-a": (["c0", "c1", "c2"], 16), "site-b": (["c1", "c2", "c3"], 24), "site-c": (["c2", "c3", "c4"], 20)}


def image(label: int, rng: np.random.Generator, size: int) -> Image.Image:
    """A noisy picture whose class is a bright band at a class-specific height and colour."""
    pixels = rng.integers(0, 90, size=(size, size, 3)).astype(np.int32)
    band = max(1, size // 6)
    top = int(label * (size - band) / 4)
    pixels[top:top + band, :, label % 3] += 150
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def folder(root: Path, classes: list[str], size: int, per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image(int(name[1:]), rng, size).save(root / name / f"{i}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    images = sub.add_parser("images", help="<out>/<class>/*.png (5 classes), or --sites: <out>/<site>/<class>/")
    images.add_argument("out", type=Path)
    images.add_argument("--sites", action="store_true")
    images.add_argument("--per-class", type=int, default=40)
    table = sub.add_parser("csv", help="scikit-learn's breast-cancer data with a `hospital` column")
    table.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.what == "images" and args.sites:
        for seed, (site, (classes, size)) in enumerate(SITES.items()):
            folder(args.out / site, classes, size, args.per_class, seed)
    elif args.what == "images":
        folder(args.out, [f"c{i}" for i in range(5)], 16, args.per_class, 0)
    else:
        from sklearn.datasets import load_breast_cancer

        frame = load_breast_cancer(as_frame=True).frame
        frame["hospital"] = np.random.default_rng(0).choice(["north", "south", "east"], len(frame))
        frame["diagnosis"] = frame.pop("target").map({0: "malignant", 1: "benign"})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
