#!/usr/bin/env bash
# Every test synk has: unit tests, end-to-end tests over a private sshd, and the
# docker-compose multi-host rig scenarios. Needs root, sshd, rsync and Docker.
#
# The tests over sshd create Unix users synkt-* (one per peer) and their homes, sshd's
# state and test trees under /var/tmp/synk-it; the rig creates the containers of
# docker/compose.yml. All of it is removed when this script ends, passed or failed
# (SYNK_KEEP_TEST_STATE=1 keeps it, to look at a failure).
set -euo pipefail
cd "$(dirname "$0")/.."

cleanup() {
    local rc=$?
    if [[ ${SYNK_KEEP_TEST_STATE:-} == 1 ]]; then
        echo "== kept /var/tmp/synk-it and the synkt-* users (SYNK_KEEP_TEST_STATE=1)" >&2
        return "$rc"
    fi
    echo "== cleaning up: /var/tmp/synk-it and the synkt-* test users" >&2
    local u
    for u in $(getent passwd | cut -d: -f1 | grep '^synkt-' || true); do
        userdel "$u" 2>/dev/null || true
    done
    rm -rf /var/tmp/synk-it
    return "$rc"
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap runs for it too.
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== cargo test (unit + end-to-end over sshd)"
cargo test --locked

echo "== multi-host rig (docker/): build, start, every scenario, tear down"
cargo build --release --locked
docker/rig ci
