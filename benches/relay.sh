#!/usr/bin/env bash
# P7: relay fan-out over rate-limited links. Nine docker hosts (docker/relay.yml, r0 … r8), every
# host's link limited to BENCH_RATE both ways (tc on each container's interface and on its host-side
# twin). synk on r0 sends BENCH_MIB MiB (BENCH_FILES random files) to one peer, then to eight; the
# table row is the ratio. The goal is ≤ 2×; a star, r0 feeding every peer itself, takes 8×.
#
#   benches/relay.sh        (needs root, Docker with docker-compose, and a Debian base: the same as
#                            docker/rig; builds target/x86_64-unknown-linux-gnu/release/synk first)
#   BENCH_RATE=100mbit BENCH_MIB=1024 BENCH_FILES=16 KEEP=1 benches/relay.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROJECT=synk-relay
RATE=${BENCH_RATE:-100mbit}
MIB=${BENCH_MIB:-1024}
FILES=${BENCH_FILES:-16}
PEERS=(r1 r2 r3 r4 r5 r6 r7 r8)
log() { printf 'relay: %s\n' "$*" >&2; }

compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -p "$PROJECT" -f docker/relay.yml "$@"
    else
        docker-compose -p "$PROJECT" -f docker/relay.yml "$@"
    fi
}
c() { echo "$PROJECT-$1"; }
as_synk() { local h=$1; shift; docker exec -u synk "$(c "$h")" bash -c "cd && $1" bash "${@:2}"; }

cargo build --release --quiet
if [[ -z ${SYNK_BASE:-} ]]; then
    if docker image inspect debian:bookworm-slim >/dev/null 2>&1; then SYNK_BASE=debian:bookworm-slim
    else
        docker image inspect synk-base:bookworm >/dev/null 2>&1 || docker/mkbase.sh
        SYNK_BASE=synk-base:bookworm
    fi
fi
export SYNK_BASE
[[ -n ${KEEP:-} ]] || trap 'compose down -v --remove-orphans >/dev/null 2>&1 || true' EXIT
compose build >/tmp/synk-relay-build.log 2>&1 || { tail -n 30 /tmp/synk-relay-build.log >&2; exit 1; }
compose up -d --remove-orphans >/dev/null 2>&1

log "waiting for the ssh mesh"
for _ in $(seq 120); do
    as_synk r0 'for h in "$@"; do ssh -o BatchMode=yes -o ConnectTimeout=3 "$h" true </dev/null || exit 1; done' \
        "${PEERS[@]}" >/dev/null 2>&1 && ok=1 && break
    sleep 1
done
[[ -n ${ok:-} ]] || { log "hosts not reachable over ssh"; exit 1; }
# r1 reaches the others too (relays run rsync themselves).
as_synk r1 'for h in "$@"; do ssh -o BatchMode=yes "$h" true </dev/null || exit 1; done' "${PEERS[@]}"

log "limiting every link to $RATE each way"
for h in r0 "${PEERS[@]}"; do
    docker exec "$(c "$h")" tc qdisc replace dev eth0 root tbf rate "$RATE" burst 256kb latency 100ms
    index=$(docker exec "$(c "$h")" cat /sys/class/net/eth0/iflink)
    veth=$(grep -lx "$index" /sys/class/net/*/ifindex | cut -d/ -f5)
    tc qdisc replace dev "$veth" root tbf rate "$RATE" burst 256kb latency 100ms
done

log "making $MIB MiB in $FILES files on r0"
as_synk r0 'rm -rf /data/p7 && mkdir -p /data/p7 && for i in $(seq "$2"); do head -c "$(( $1 / $2 ))M" /dev/urandom > /data/p7/f$i; done' \
    "$MIB" "$FILES"
clear() { for h in "${PEERS[@]}"; do as_synk "$h" 'rm -rf /data/p7 ~/.local/state/synk ~/.cache/synk/digests* 2>/dev/null; true'; done
          as_synk r0 'rm -rf ~/.local/state/synk'; }
sum='cd /data/p7 && cat $(ls | sort) | sha256sum | cut -c1-16'
run() {
    local hosts=() h
    for h in "$@"; do hosts+=(-h "$h"); done
    as_synk r0 's=$(date +%s%N); synk -q "$@" /data/p7 || exit 1; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))' "${hosts[@]}" \
        | awk '{ printf "%.1f", $1 / 1000 }'
    local ref; ref=$(as_synk r0 "$sum")
    for h in "$@"; do
        [[ $(as_synk "$h" "$sum") == "$ref" ]] || { log "ERROR: $h does not hold r0's files"; exit 1; }
    done
}
clear
one=$(run r1)
log "one peer: $one s"
clear
eight=$(run "${PEERS[@]}")
log "eight peers: $eight s"
echo
printf '| # | measure | synk | reference | ratio |\n| --- | --- | --- | --- | --- |\n'
printf '| P7 | %s MiB to 8 peers, every link %s | %s s | to 1 peer: %s s | %sx |\n' \
    "$MIB" "$RATE" "$eight" "$one" "$(awk -v a="$eight" -v b="$one" 'BEGIN { printf "%.2f", a / b }')"
