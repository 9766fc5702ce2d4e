# Shared by the sshd benchmarks: a private sshd on loopback that serves root by key, a tree
# of small files, and a best-of-N timer. Source it after `set -euo pipefail`; it sets $synk
# and $work (removed on exit) and starts nothing until asked.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Scripts may give synk a HOME of its own; cargo keeps using the real one.
export CARGO_HOME=${CARGO_HOME:-$HOME/.cargo} RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}
cargo build --release --quiet
synk=$PWD/target/x86_64-unknown-linux-gnu/release/synk
work=$(mktemp -d /var/tmp/synk-bench.XXXXXX)
trap 'for p in "$work"/sshd*.pid; do kill "$(cat "$p")" 2>/dev/null || true; done; rm -rf "$work"' EXIT
ssh-keygen -q -t ed25519 -N '' -f "$work/key"
ssh-keygen -q -t ed25519 -N '' -f "$work/host"
cp "$work/key.pub" "$work/authorized_keys"
mkdir -p "$work/bin" /run/sshd
ln -s "$synk" "$work/bin/synk"
cat > "$work/ssh_config" <<CFG
Host *
    IdentityFile $work/key
    IdentitiesOnly yes
    UserKnownHostsFile $work/known_hosts
    BatchMode yes
CFG

# start_sshd NAME [SSHD_CONFIG_LINE…]: an sshd on a free port listening on 127.0.0.1 and
# 127.0.0.2, with extra config lines; prints the port.
start_sshd() {
    local name=$1 port; shift
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    {
        printf '%s\n' "Port $port" "ListenAddress 127.0.0.1" "ListenAddress 127.0.0.2" \
            "HostKey $work/host" "PidFile $work/sshd-$name.pid" "AuthorizedKeysFile $work/authorized_keys" \
            "PermitRootLogin prohibit-password" "StrictModes no" "UsePAM no" "MaxStartups 100"
        printf '%s\n' "$@"
    } >"$work/sshd-$name.conf"
    for a in 127.0.0.1 127.0.0.2; do
        echo "[$a]:$port $(cut -d' ' -f1,2 "$work/host.pub")" >>"$work/known_hosts"
    done
    /usr/sbin/sshd -f "$work/sshd-$name.conf"
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    echo "$port"
}

# make_tree DIR FILES: small files of random content in 100 directories.
make_tree() {
    python3 - "$1" "$2" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i % 100:03}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06}"), "wb") as f:
        f.write(os.urandom(1 + i % 4096))
PY
}

# time_each FN…: each function's best of 5 wall-clock runs, in seconds, on one line. The runs
# take turns (one of each, five times over), so a machine that slows down or speeds up during
# the measure weighs on synk and its reference alike.
time_each() {
    local -a best=()
    local i f t0 t1
    for _ in 1 2 3 4 5; do
        i=0
        for f in "$@"; do
            t0=$(date +%s.%N); "$f" >/dev/null; t1=$(date +%s.%N)
            best[i]=$(python3 -c "print(min(${best[i]:-999}, $t1 - $t0))")
            i=$((i + 1))
        done
    done
    echo "${best[*]}"
}

# time_it CMD…: best of 5 wall-clock runs of one command, in seconds.
time_it() {
    local -a cmd=("$@")
    # Called while time_it runs, so it sees time_it's cmd.
    time_it_cmd() { "${cmd[@]}"; }
    time_each time_it_cmd
}

# bench_peers: three peers, users bench1..3 with homes below $work, reached as user@127.0.0.1
# through one sshd; the client gets HOME=$work/client. Sets peers, port, hosts (their -p/-h
# arguments) and synk_cmd (synk, quiet, to all three).
bench_peers() {
    peers=(bench1 bench2 bench3)
    local u
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
}

# peak_rss CMD…: runs CMD and prints "CLIENT SERVE": the kernel's peak-RSS marks (KiB) of its
# process and of its largest synk child (the local peer's serve), sampled while it runs.
peak_rss() {
    "$@" >/dev/null &
    local pid=$! rss=0 serve=0 h c
    while kill -0 "$pid" 2>/dev/null; do
        h=$(awk '/VmHWM/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
        ((${h:-0} > rss)) && rss=$h
        for c in $(pgrep -P "$pid" -x synk || true); do
            h=$(awk '/VmHWM/{print $2}' "/proc/$c/status" 2>/dev/null || true)
            ((${h:-0} > serve)) && serve=$h
        done
        sleep 0.02
    done
    wait "$pid"
    echo "$rss $serve"
}
