#!/usr/bin/env bash
# Every test synk has: unit tests, end-to-end tests over a private sshd, and the
# docker-compose multi-host rig scenarios. Needs root, sshd, rsync and Docker.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (unit + end-to-end over sshd)"
cargo test --locked

echo "== multi-host rig (docker/): build, start, every scenario, tear down"
cargo build --release --locked
docker/rig ci
