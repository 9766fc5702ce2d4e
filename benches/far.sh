#!/usr/bin/env bash
# Far peers: W1–W3 (and W4, a resumed transfer) with 100 ms of round-trip time on every link.
# The three peers of benches/lib.sh are reached through benches/delay.py, a forwarder that delays
# every chunk 50 ms each way, and so are the peers from each other (each peer user gets the key
# and an ssh config; a relay or a remote master is handed the forwarder's port like the client).
# Prints one table row per measure, each a ratio against its reference in the same run.
#
#   benches/far.sh            (needs root)
#   DELAY_MS=25 benches/far.sh   another latency (each way)
#
#   W1  in-sync re-check, 1,000 files, 3 peers           vs 3 parallel `ssh HOST true`
#   W2  first sync of 2,000 small files to 3 empty peers vs `rsync -a` to each in turn
#   W3  one changed 8 KiB file in the W1 tree            vs the W1 floor
#   W4  1 GiB to one peer cut at 50% (SIGTERM to the client), then rerun: bytes the rerun sent
#       / the file's size (rsync's literal data, `literal_bytes` in --json)
#
#   FAR_ONLY="W4" benches/far.sh   only the rows named (W1 and W3 go together)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
delay_ms=${DELAY_MS:-50}
bench_peers

# The forwarder in front of the sshd; every host reaches every other through it.
fport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 benches/delay.py "$fport" "$port" "$delay_ms" &
echo $! >"$work/sshd-delay.pid"
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$fport") 2>/dev/null && break; sleep 0.1; done
for a in 127.0.0.1 127.0.0.2; do
    echo "[$a]:$fport $(cut -d' ' -f1,2 "$work/host.pub")" >>"$work/known_hosts"
done
chmod 644 "$work/known_hosts"
for u in "${peers[@]}"; do
    install -m 600 -o "$u" -g "$u" "$work/key" "$work/home/$u/.ssh/id_ed25519"
    printf '%s\n' "Host *" "    IdentityFile ~/.ssh/id_ed25519" "    IdentitiesOnly yes" \
        "    UserKnownHostsFile $work/known_hosts" "    BatchMode yes" >"$work/home/$u/.ssh/config"
    chown "$u:$u" "$work/home/$u/.ssh/config"
done
hosts=()
for u in "${peers[@]}"; do hosts+=(-p "$fport" -h "$u@127.0.0.1"); done
synk_cmd=("$synk" -q -F "$work/ssh_config" "${hosts[@]}")
far_ssh() { ssh -F "$work/ssh_config" -p "$fport" "$1@127.0.0.1" true; }
three_ssh() { far_ssh bench1 & far_ssh bench2 & far_ssh bench3 & wait; }
# A peer reaches another through the forwarder too (what a relay or a remote master does).
su -s /bin/sh bench1 -c "ssh -p $fport bench2@127.0.0.1 true" || { echo "far: peers cannot reach each other" >&2; exit 1; }

ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
ms() { python3 -c "print(f'{$1*1000:.0f} ms')"; }
secs() { python3 -c "print(f'{$1:.2f} s')"; }
rtt="$((2 * delay_ms)) ms RTT"

want() { [[ -z ${FAR_ONLY:-} || " $FAR_ONLY " == *" $1 "* ]]; }

if want W1 || want W3; then
# W1 and W3: a 1,000-file tree in sync on every peer.
make_tree "$work/client/tree" 1000
"${synk_cmd[@]}" "$work/client/tree"
"${synk_cmd[@]}" "$work/client/tree"
"${synk_cmd[@]}" "$work/client/tree" || { echo "far: the tree is not in sync" >&2; exit 1; }
synk_tree() { "${synk_cmd[@]}" "$work/client/tree"; }
read -r w1_synk w1_ref < <(time_each synk_tree three_ssh)
echo "| W1 | in-sync re-check, 1,000 files, 3 peers, $rtt | $(ms "$w1_synk") | 3 parallel ssh true: $(ms "$w1_ref") | $(ratio "$w1_synk" "$w1_ref") |"

# W3: one file of the tree changed (8 KiB of new content) before each run.
synk_changed() {
    head -c 8192 /dev/urandom >"$work/client/tree/d007/f000007"
    "${synk_cmd[@]}" "$work/client/tree"
}
read -r w3_synk w3_ref < <(time_each synk_changed three_ssh)
echo "| W3 | one changed 8 KiB file in that tree, 3 peers, $rtt | $(ms "$w3_synk") | 3 parallel ssh true: $(ms "$w3_ref") | $(ratio "$w3_synk" "$w3_ref") |"
fi

if want W2; then
# W2: a first sync of 2,000 small files to three empty peers.
make_tree "$work/client/small" 2000
clear_small() { for u in "${peers[@]}"; do rm -rf "$work/home/$u/small" "$work/home/$u/.local/state"; done; rm -rf "$work/client/.local/state"; }
synk_first() { clear_small; "${synk_cmd[@]}" "$work/client/small"; }
rsync_each() {
    clear_small
    for u in "${peers[@]}"; do
        rsync -a -e "ssh -F $work/ssh_config -p $fport" "$work/client/small/" "$u@127.0.0.1:$work/home/$u/small/"
    done
}
read -r w2_synk w2_ref < <(time_each synk_first rsync_each)
echo "| W2 | first sync of 2,000 small files to 3 empty peers, $rtt | $(secs "$w2_synk") | rsync -a to each in turn: $(secs "$w2_ref") | $(ratio "$w2_synk" "$w2_ref") |"
fi

if want W4; then
# W4: a 1 GiB copy to one peer cut once what the peer received passes half of it (rsync's
# temp file in synk's scratch directory, which a receiver cut short renames to the partial
# file in the partial directory there), then run again.
size=$((1 << 30))
head -c "$size" /dev/urandom >"$work/client/big.bin"
rm -rf "$work/home/bench1/big.bin" "$work/home/bench1"/.synk-scratch.*
one=("$synk" -q -F "$work/ssh_config" -p "$fport" -h "bench1@127.0.0.1")
"${one[@]}" --copier rsync "$work/client/big.bin" &
client=$!
partial_size() {
    local f n=0
    for f in "$work/home/bench1"/.synk-scratch.*/.big.bin.* \
        "$work/home/bench1"/.synk-scratch.*/.synk-scratch.0000000000000000/* \
        "$work/home/bench1"/.synk-scratch.*/.synk-scratch.0000000000000000/.[!.]*; do
        [[ -f $f ]] && n=$(stat -c %s "$f")
    done
    echo "$n"
}
for _ in $(seq 6000); do
    (($(partial_size) >= size / 2)) && break
    kill -0 "$client" 2>/dev/null || break
    sleep 0.01
done
kill -TERM "$client" 2>/dev/null || true
wait "$client" 2>/dev/null || true
sleep 1
kept=$(partial_size)
sent=$("${one[@]}" --json --copier rsync "$work/client/big.bin" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["roots"][0]["literal_bytes"])')
cmp -s "$work/client/big.bin" "$work/home/bench1/big.bin" || { echo "far: W4 copy differs" >&2; exit 1; }
echo "| W4 | 1 GiB to one peer cut at 50% (kept $((kept >> 20)) MiB), then rerun, $rtt | rerun sent $((sent >> 20)) MiB | the file: $((size >> 20)) MiB | $(python3 -c "print(f'{$sent/$size:.2f}')") |"
rm -f "$work/client/big.bin"
fi
