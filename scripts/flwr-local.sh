#!/usr/bin/env bash
# `flwr run .` through Flower's own CLI on a local simulation SuperLink that corolla starts with
# --disable-runtime-dependency-installation (Flower's managed one would install the app's
# dependencies per run and pull CUDA torch).
#   scripts/flwr-local.sh [hydra overrides...]      e.g. scripts/flwr-local.sh task=digits model=mlp
#   scripts/flwr-local.sh --stop                     stops the SuperLink this script started
# Flower's state (config.toml, the SuperLink's database and log) lives in $FLWR_HOME, by default
# outside the checkout: ${XDG_STATE_HOME:-~/.local/state}/corolla/flwr.
set -euo pipefail
cd "$(dirname "$0")/.."
export FLWR_HOME=${FLWR_HOME:-${XDG_STATE_HOME:-$HOME/.local/state}/corolla/flwr}
BIN=$PWD/.venv/bin
export PATH="$BIN:$PATH"   # the SuperLink starts flower-superexec, flwr-simulation by name
RUNTIME=$FLWR_HOME/local-superlink
PIDFILE=$RUNTIME/superlink.pid

if [ "${1:-}" = "--stop" ]; then  # the SuperLink and what it started (SuperExec, simulations)
  if [ -f "$PIDFILE" ]; then
    "$BIN/python" - "$(cat "$PIDFILE")" <<'PY'
import sys, psutil
try:
    root = psutil.Process(int(sys.argv[1]))
    procs = [root, *root.children(recursive=True)]
except psutil.NoSuchProcess:  # already gone
    sys.exit(0)
for p in procs:
    try:
        p.terminate()
    except psutil.NoSuchProcess:  # children exit with their parent
        pass
_, alive = psutil.wait_procs(procs, timeout=10)
for p in alive:
    try:
        p.kill()
    except psutil.NoSuchProcess:
        pass
print("stopped", len(procs), "processes")
PY
  fi
  rm -rf "$RUNTIME"   # pid file, database and log of the stopped SuperLink
  exit 0
fi
mkdir -p "$RUNTIME"

# Flower's `:local:` connection uses a SuperLink already listening on these ports instead of
# starting its own; these are the flags Flower uses, plus the one it lacks.
if ! curl -sf "http://127.0.0.1:${FLWR_LOCAL_SUPERLINK_HTTP_API_PORT:-39091}/health" >/dev/null 2>&1; then
  setsid "$BIN/flower-superlink" --insecure --simulation --isolation subprocess \
    --disable-runtime-dependency-installation \
    --host 127.0.0.1 --port "${FLWR_LOCAL_SUPERLINK_HTTP_API_PORT:-39091}" \
    --database "$RUNTIME/state.db" --log-file "$RUNTIME/superlink.log" \
    >/dev/null 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 150); do
    curl -sf "http://127.0.0.1:${FLWR_LOCAL_SUPERLINK_HTTP_API_PORT:-39091}/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
fi

# One SuperNode per client of the task, taken from the composed config.
overrides="$*"
clients=$("$BIN/python" -c "import shlex,sys; from conf.compose import compose; print(compose(shlex.split(sys.argv[1]))['task']['num_clients'])" "$overrides")
cat > "$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "local"

[superlink.local]
address = ":local:"
options.num-supernodes = $clients
TOML
exec "$BIN/flwr" run . local --stream --run-config "overrides=\"$overrides\""
