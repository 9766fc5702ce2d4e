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
cd "$(dirname "$0")/.."
cargo build --release --quiet
synk=$PWD/target/release/synk

work=$(mktemp -d /var/tmp/synk-recheck.XXXXXX)
trap 'kill $(cat "$work/sshd.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -f "$work/key"
ssh-keygen -q -t ed25519 -N '' -f "$work/host"
cp "$work/key.pub" "$work/authorized_keys"
mkdir -p "$work/bin" /run/sshd
ln -s "$synk" "$work/bin/synk"
cat > "$work/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $work/host
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
SetEnv PATH=$work/bin:/usr/local/bin:/usr/bin:/bin
CFG
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$work/host.pub")" > "$work/known_hosts"
cat > "$work/ssh_config" <<CFG
Host *
    IdentityFile $work/key
    IdentitiesOnly yes
    UserKnownHostsFile $work/known_hosts
    BatchMode yes
CFG
/usr/sbin/sshd -f "$work/sshd_config"
for _ in $(seq 50); do nc -z 127.0.0.1 "$port" 2>/dev/null && break; sleep 0.1; done

# A tree of small files in 100 directories.
python3 - "$work/tree" "$files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i % 100:03}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06}"), "wb") as f:
        f.write(os.urandom(1 + i % 4096))
PY

time_it() { # best of 5, in seconds
    local best=999
    for _ in 1 2 3 4 5; do
        local t0 t1
        t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N)
        best=$(python3 -c "print(min($best, $t1 - $t0))")
    done
    echo "$best"
}
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
