#!/usr/bin/env bash
# Every test synk has: unit tests, end-to-end tests over a private sshd, and the
# docker-compose multi-host rig scenarios. Needs root, sshd, rsync and Docker.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (unit + end-to-end over sshd)"
cargo test --locked

echo "== multi-host rig (docker/)"
cargo build --release --locked
trap 'docker/rig down >/dev/null 2>&1 || true' EXIT
docker/rig up
docker/rig test
