#!/usr/bin/env bash
# What keeping sync state costs: an in-sync re-check of FILES files on 3 peers (this host and
# two sshd peers), with every peer keeping its state, against the same re-check where no peer
# can keep any (XDG_STATE_HOME unusable), measured in the same run.
#
#   benches/state.sh [FILES]     (default 10000 files; needs root, sshd, ssh-keygen)
#
# All three peers are this host and hold the very same tree, so each run is a pure re-check.
set -euo pipefail
files=${1:-10000}
source "$(dirname "$0")/lib.sh"
path="SetEnv PATH=$work/bin:/usr/local/bin:/usr/bin:/bin"
with=$(start_sshd with "$path XDG_STATE_HOME=$work/state")
without=$(start_sshd without "$path XDG_STATE_HOME=/proc/synk-no-state")
make_tree "$work/tree" "$files"

run() { # run PORT STATE_HOME
    XDG_STATE_HOME=$2 "$synk" -q -F "$work/ssh_config" -p "$1" -h root@127.0.0.1 -p "$1" -h root@127.0.0.2 "$work/tree"
}
run "$with" "$work/state"               # the first run records the state; it must be in sync
run "$without" /proc/synk-no-state
with_t=$(time_it run "$with" "$work/state")
without_t=$(time_it run "$without" /proc/synk-no-state)
python3 - "$files" "$with_t" "$without_t" <<'PY'
import sys
n, w, wo = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"in-sync re-check of {n} files on 3 peers, best of 5")
print(f"without sync state  {wo*1000:8.1f} ms")
print(f"with sync state     {w*1000:8.1f} ms")
print(f"ratio with/without: {w/wo:.2f}x (goal: at most 1.10x)")
PY
