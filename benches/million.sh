#!/usr/bin/env bash
# A million files (the P5 set-up of benches/run.sh at scale): the same tree of small random files
# on the client and three peers (users behind a private sshd on loopback), then a first sync
# (identical trees, no history), a second run and an in-sync re-check, each with its time and
# the peak RSS of the client process and of the local peer's serve (the kernel's VmHWM, sampled
# while it runs). Making the tree takes minutes; it needs about 4 GB and 4M inodes.
#
#   benches/million.sh            (needs root)
#   N=200000 benches/million.sh   another size
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
n=${N:-1000000}
peers=(bench1 bench2 bench3)
for u in "${peers[@]}"; do
    if id -u "$u" >/dev/null 2>&1; then usermod -d "$work/home/$u" "$u"; else useradd -M -s /bin/sh -p '*' -d "$work/home/$u" "$u"; fi
    mkdir -p "$work/home/$u/.ssh"
    cp "$work/key.pub" "$work/home/$u/.ssh/authorized_keys"
    chown -R "$u:$u" "$work/home/$u"
done
chmod 755 "$work" "$work/home"
mkdir -p "$work/client"
port=$(start_sshd main "SetEnv PATH=$work/bin:/usr/bin:/bin" "AuthorizedKeysFile .ssh/authorized_keys")
export HOME=$work/client
hosts=()
for u in "${peers[@]}"; do hosts+=(-p "$port" -h "$u@127.0.0.1"); done
synk_cmd=("$synk" -q -F "$work/ssh_config" "${hosts[@]}")

t0=$SECONDS
make_tree "$work/client/many" "$n"
for u in "${peers[@]}"; do cp -a "$work/client/many" "$work/home/$u/many"; chown -R "$u:$u" "$work/home/$u/many"; done
echo "$n files on 4 hosts, made in $((SECONDS - t0)) s"

# measure LABEL: one run, its time and both peak RSS figures.
measure() {
    local s e pid hwm=0 shwm=0 h c
    s=$(date +%s%N)
    "${synk_cmd[@]}" "$work/client/many" & pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        h=$(awk '/VmHWM/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
        ((${h:-0} > hwm)) && hwm=$h
        for c in $(pgrep -P "$pid" -x synk || true); do
            h=$(awk '/VmHWM/{print $2}' "/proc/$c/status" 2>/dev/null || true)
            ((${h:-0} > shwm)) && shwm=$h
        done
        sleep 0.05
    done
    wait "$pid"
    e=$(date +%s%N)
    printf '| %s | %.1f s | %d MB | %d MB |\n' "$1" "$(( (e - s) / 1000000 ))e-3" $((hwm / 1024)) $((shwm / 1024))
}
printf '| %s files, 3 peers | time | client peak RSS | local serve peak RSS |\n| --- | --- | --- | --- |\n' "$n"
measure "first sync (identical trees, no history)"
measure "second run"
measure "in-sync re-check"
