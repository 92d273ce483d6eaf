#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests need (wasm target,
# OpenSSH sshd, etcd, the official Python clients, componentize-py and componentize-js for the Python
# and JavaScript policies), runs the whole workspace's tests (unit, policy in all three
# languages, emulator fidelity, SSH against sshd, end to end), then the demo on the embedded
# emulators.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds are cached outside the clone so a fresh clone does not rebuild the world.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ecs-provisioner/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

eval "$(scripts/setup-test-deps.sh | sed 's/^/export /')"

echo "== cargo test (workspace)"
cargo test --workspace --no-fail-fast

echo "== demo"
cargo run --quiet -p ecs-provisioner -- demo --quick

echo "== demo --ha (three replicas, one etcd, the leader crashes midway)"
cargo run --quiet -p ecs-provisioner -- demo --ha --quick --etcd "$ECSP_ETCD"
