#!/usr/bin/env bash
# Idempotent set-up: Debian datasets (when apt is there), .venv/ with torch==2.13.0 first, then corolla.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# 1. Fashion-MNIST from Debian (the default experiment's data). Skipped without apt or root.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != none ]; then
    log "installing Debian's dataset-fashion-mnist"
    $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
      || log "could not install dataset-fashion-mnist; Fashion-MNIST tasks will say how to get it"
  else
    log "not root: run 'sudo apt-get install dataset-fashion-mnist' for the Fashion-MNIST tasks"
  fi
fi

# 1b. nginx for the deployment's gateway (`corolla deploy gateway|operator`, tests/e2e). Same rules.
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ] && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != none ]; then
    log "installing Debian's nginx-light (the deployment gateway)"
    $SUDO apt-get install -y -q --no-install-recommends nginx-light >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q --no-install-recommends nginx-light >/dev/null; } \
      || log "could not install nginx-light; the deployment gateway and its tests need it"
    # corolla starts its own nginx processes; the distribution's default site on :80 stays off.
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
  else
    log "not root: run 'sudo apt-get install nginx-light' for the deployment gateway"
  fi
fi

# 2. The virtualenv; reinstalled only when pyproject.toml or this script changed.
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || { log "creating .venv"; "$PY" -m venv .venv; }
stamp=.venv/.corolla-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing into .venv (torch==2.13.0 first: a bare 'torch' would pull CUDA builds)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[test]"
  # Data packages whose own dependency pins would fight ours.
  .venv/bin/python -m pip install -q --no-deps animal-mnist
  # EfficientNet-Lite's network code requires a bare `torch` (never let pip resolve one).
  .venv/bin/python -m pip install -q --no-deps efficientnet-lite-pytorch==0.1.0
  echo "$want" > "$stamp"
else
  log ".venv is up to date"
fi
