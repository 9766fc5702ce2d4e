#!/usr/bin/env bash
# P8: many peers. Seventeen docker hosts (docker/many.yml): synk on m00 re-checks an in-sync tree of
# BENCH_FILES files (default 10,000) on its 16 peers m01 … m16, against 16 parallel `ssh HOST true` from m00,
# best of BENCH_RUNS (default 5) each, taking turns. The goal is ≤ 1.2×. Links run at loopback speed.
# A second reference, 16 parallel `ssh HOST find` reading every entry's size, mtime and mode, is the least
# a re-check can do: connect, and look at each entry once; all of it shares the machine's cores.
#
#   benches/many.sh         (needs root, Docker with docker-compose, and a Debian base: the same as
#                            docker/rig; builds target/x86_64-unknown-linux-gnu/release/synk first)
#   BENCH_FILES=1000 KEEP=1 benches/many.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=synk-many
FILES=${BENCH_FILES:-10000}
RUNS=${BENCH_RUNS:-5}
PEERS=(m01 m02 m03 m04 m05 m06 m07 m08 m09 m10 m11 m12 m13 m14 m15 m16)
log() { printf 'many: %s\n' "$*" >&2; }

compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -p "$PROJECT" -f docker/many.yml "$@"
    else
        docker-compose -p "$PROJECT" -f docker/many.yml "$@"
    fi
}
as_synk() { local h=$1; shift; docker exec -u synk "$PROJECT-$h" bash -c "cd && $1" bash "${@:2}"; }

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
compose build >/tmp/synk-many-build.log 2>&1 || { tail -n 30 /tmp/synk-many-build.log >&2; exit 1; }
compose up -d --remove-orphans >/dev/null 2>&1

log "waiting for the ssh mesh"
for _ in $(seq 120); do
    as_synk m00 'for h in "$@"; do ssh -o BatchMode=yes -o ConnectTimeout=3 "$h" true </dev/null || exit 1; done' \
        "${PEERS[@]}" >/dev/null 2>&1 && ok=1 && break
    sleep 1
done
[[ -n ${ok:-} ]] || { log "hosts not reachable over ssh"; exit 1; }

log "making $FILES files on m00, first sync to 16 peers"
# 100 files a directory, 1–4 KiB each
as_synk m00 'set -e; rm -rf /data/p8; mkdir -p /data/p8; cd /data/p8
    for i in $(seq 0 $(( $1 - 1 ))); do
        d=d$(( i / 100 )); [ -d $d ] || mkdir $d
        head -c $(( 1024 + i * 37 % 3072 )) /dev/urandom >$d/f$i
    done' "$FILES"
hosts=(); for h in "${PEERS[@]}"; do hosts+=(-h "$h"); done
as_synk m00 'synk -q "$@" /data/p8' "${hosts[@]}"       # first sync
as_synk m00 'synk -q "$@" /data/p8' "${hosts[@]}"       # warm: state and digest caches written
sum='cd /data/p8 && find . -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16'
ref=$(as_synk m00 "$sum")
for h in "${PEERS[@]}"; do
    [[ $(as_synk "$h" "$sum") == "$ref" ]] || { log "ERROR: $h does not hold m00's files"; exit 1; }
done

log "timing: best of $RUNS, taking turns"
# Timed on m00 itself, so docker exec is not part of either figure.
read -r best_synk best_ssh best_walk < <(as_synk m00 '
    runs=$1; shift
    ms() { local s e; s=$(date +%s%N); "$@" || exit 1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
    synk_run() { synk -q --json "$@" /data/p8 >/tmp/p8.json || { echo "synk: not in sync" >&2; return 1; }
                 grep -q "\"bytes\":0" /tmp/p8.json || { echo "synk: the re-check copied" >&2; return 1; }; }
    ssh_all() { local h; for h in "$@"; do ssh -o BatchMode=yes "$h" true </dev/null & done; wait; }
    walk_all() {
        local h
        for h in "$@"; do
            ssh -o BatchMode=yes "$h" "find /data/p8 -printf \"%s %T@ %m\\n\" >/dev/null" </dev/null &
        done
        wait
    }
    peers=(); for a in "$@"; do [ "$a" = -h ] || peers+=("$a"); done
    bs=""; bh=""; bw=""
    for _ in $(seq "$runs"); do
        s=$(ms synk_run "$@") || exit 1; h=$(ms ssh_all "${peers[@]}") || exit 1
        w=$(ms walk_all "${peers[@]}") || exit 1
        { [ -z "$bs" ] || [ "$s" -lt "$bs" ]; } && bs=$s
        { [ -z "$bh" ] || [ "$h" -lt "$bh" ]; } && bh=$h
        { [ -z "$bw" ] || [ "$w" -lt "$bw" ]; } && bw=$w
    done
    echo "$bs $bh $bw"' "$RUNS" "${hosts[@]}")
[[ -n ${best_walk:-} ]] || { log "the timing failed"; exit 1; }
log "synk: $best_synk ms, 16 parallel ssh true: $best_ssh ms, 16 parallel ssh find: $best_walk ms"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
printf '| # | measure | synk | reference | ratio |\n| --- | --- | --- | --- | --- |\n'
printf '| P8 | in-sync re-check, %s files, 16 peers | %s ms | 16 parallel ssh true: %s ms | %sx |\n' \
    "$FILES" "$best_synk" "$best_ssh" "$(ratio "$best_synk" "$best_ssh")"
printf '| P8w | the same | %s ms | 16 parallel ssh find (every entry stat-ed): %s ms | %sx |\n' \
    "$best_synk" "$best_walk" "$(ratio "$best_synk" "$best_walk")"
