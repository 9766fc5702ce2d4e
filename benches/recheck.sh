#!/usr/bin/env bash
# No-op re-check: how long `synk` takes to confirm an in-sync tree with one remote peer,
# against the floor of any SSH tool, `ssh host true`, measured in the same run.
#
#   benches/recheck.sh [FILES]     (default 1000 files; needs root, sshd, ssh-keygen)
#
# A private sshd on a loopback port serves root by key; the "remote" peer is this host, so
# both ends hold the very same tree and the run is a pure re-check.
set -euo pipefail
files=${1:-1000}
source "$(dirname "$0")/lib.sh"
port=$(start_sshd main "SetEnv PATH=$work/bin:/usr/local/bin:/usr/bin:/bin")
make_tree "$work/tree" "$files"

ssh_t=$(time_it ssh -F "$work/ssh_config" -p "$port" root@127.0.0.1 true)
synk_t=$(time_it "$synk" -q -F "$work/ssh_config" -p "$port" -h root@127.0.0.1 "$work/tree")
"$synk" -F "$work/ssh_config" -p "$port" -h root@127.0.0.1 "$work/tree" # must exit 0: in sync
python3 - "$files" "$ssh_t" "$synk_t" <<'PY'
import sys
n, s, y = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"in-sync re-check of {n} files, best of 5")
print(f"ssh host true   {s*1000:8.1f} ms")
print(f"synk re-check   {y*1000:8.1f} ms")
print(f"ratio synk/ssh-true: {y/s:.2f}x")
PY
