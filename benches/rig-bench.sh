#!/usr/bin/env bash
# synk vs rsync on the docker rig (run by `docker/rig bench`, which brings the rig up first).
#
#  1. first sync of a ~1 GiB tree of mixed file sizes from alpha to 3 hosts (beta, gamma, epsilon):
#     `synk -h beta -h gamma -h epsilon TREE` vs `rsync -a TREE/ HOST:TREE/` run for each host in turn
#  2. in-sync re-check of a 10,000-file tree on the same 3 hosts: synk vs `rsync -an` to each host in turn,
#     cold (synk has no digests cached: reads every file) and warm (the steady state of a periodic synk)
#
# Everything runs inside alpha as user synk; times are wall clock measured there, one run each.
# Prints the times and the ratios (synk time / rsync time: below 1 means synk is faster).
#   BENCH_MIB   size of tree 1 in MiB (default 1024)      BENCH_FILES  files in tree 2 (default 10000)
set -euo pipefail

P=synk-rig
TARGETS=(beta gamma epsilon)
MIB=${BENCH_MIB:-1024}
NFILES=${BENCH_FILES:-10000}
BIG=/data/bench/mixed
SMALL=/data/bench/small

c() { echo "$P-$1"; }
hx() { local h=$1 s=$2; shift 2; docker exec -u synk "$(c "$h")" bash -c "$s" bash "$@"; }
log() { printf 'bench: %s\n' "$*" >&2; }

# time_on HOST SCRIPT: wall seconds (3 decimals) of SCRIPT run on HOST; its output goes to stderr
time_on() {
    hx "$1" 's=$(date +%s%N); ( '"$2"' ) >&2; rc=$?; e=$(date +%s%N)
            [ $rc = 0 ] || { echo "command failed ($rc): $0" >&2; exit $rc; }
            echo $(( (e - s) / 1000000 ))' | awk '{ printf "%.3f", $1 / 1000 }'
}

# tree digest: names, sizes, modes, mtimes and content of every regular file
TREESUM='cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 stat -c "%n %s %a %Y" | sha256sum | cut -c1-16;
         find . -type f -print0 | LC_ALL=C sort -z | xargs -0 cat | sha256sum | cut -c1-16'
check_same() {
    local dir=$1 ref h got
    ref=$(hx alpha "$TREESUM" "$dir" | tr '\n' ' ')
    for h in "${TARGETS[@]}"; do
        got=$(hx "$h" "$TREESUM" "$dir" | tr '\n' ' ')
        [[ $got == "$ref" ]] || { log "ERROR: $h:$dir differs from alpha's ($got vs $ref)"; exit 1; }
    done
}
clear_targets() { local h; for h in "${TARGETS[@]}"; do hx "$h" 'rm -rf "$1"; mkdir -p /data/bench' "$1"; done; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

for h in alpha "${TARGETS[@]}"; do hx "$h" 'rm -rf /data/bench; mkdir -p /data/bench'; done

# ---- tree 1: mixed sizes, random (incompressible) content, ~MIB MiB
log "making a ${MIB} MiB tree of mixed file sizes on alpha"
hx alpha '
set -e; mib=$1; d=$2; mkdir -p "$d"/large "$d"/medium "$d"/small "$d"/tiny; cd "$d"
r() { head -c "$1" /dev/urandom; }
# ~37% in 3 large files, ~31% in 8 MiB files, ~25% in 256 KiB files, ~6% in 16 KiB files, 2000 files of 1 KiB
big=$(( mib * 128 / 1024 )); [ "$big" -ge 1 ] || big=1
for i in 1 2 3; do r "${big}M" > large/l$i.bin; done
n=$(( mib * 40 / 1024 )); for i in $(seq "$n"); do r 8M > medium/m$i.bin; done
r "$(( mib * 250 / 1024 ))M" > /tmp/blob && (cd small && split -a 4 -b 256K /tmp/blob s)
r "$(( mib * 62 / 1024 ))M" > /tmp/blob && mkdir -p tiny/a && (cd tiny/a && split -a 4 -b 16K /tmp/blob t)
r 2000K > /tmp/blob && mkdir -p tiny/b && (cd tiny/b && split -a 4 -b 1K /tmp/blob u)
rm -f /tmp/blob' "$MIB" "$BIG"
read -r files bytes <<<"$(hx alpha 'echo $(find "$1" -type f | wc -l) $(du -sb "$1" | cut -f1)' "$BIG")"
log "tree 1: $files files, $((bytes / 1048576)) MiB"

clear_targets "$BIG"
log "synk first sync to ${TARGETS[*]}"
t_synk1=$(time_on alpha "synk -q -h beta -h gamma -h epsilon $BIG")
check_same "$BIG"
clear_targets "$BIG"
log "rsync -a to each host in turn"
t_rsync1=$(time_on alpha "for h in ${TARGETS[*]}; do rsync -a $BIG/ \$h:$BIG/ || exit 1; done")
check_same "$BIG"
for h in alpha "${TARGETS[@]}"; do hx "$h" 'rm -rf "$1"' "$BIG"; done

# ---- tree 2: NFILES small files in 100 directories, already in sync everywhere
log "making a $NFILES-file tree on alpha and syncing it to ${TARGETS[*]}"
hx alpha '
set -e; n=$1; d=$2; mkdir -p "$d"; cd "$d"
head -c "$((n * 512))" /dev/urandom > /tmp/blob
split -a 5 -b 512 /tmp/blob f; rm /tmp/blob
i=0; for f in f*; do sub=d$((i % 100)); mkdir -p "$sub"; mv "$f" "$sub/"; i=$((i + 1)); done' "$NFILES" "$SMALL"
for h in "${TARGETS[@]}"; do hx alpha 'rsync -a "$1"/ "$2:$1"/' "$SMALL" "$h"; done
check_same "$SMALL"
log "in-sync re-check: synk (cold: no digests cached yet, every file read)"
t_synk2=$(time_on alpha "synk -q -h beta -h gamma -h epsilon $SMALL")
log "in-sync re-check: rsync -an to each host in turn"
t_rsync2=$(time_on alpha "for h in ${TARGETS[*]}; do rsync -an $SMALL/ \$h:$SMALL/ >/dev/null || exit 1; done")
# Files younger than the digest cache's 2 s settling window were not recorded: let them age,
# run once to record them, then measure the steady state a periodic synk sees.
sleep 3
hx alpha "synk -q -h beta -h gamma -h epsilon $SMALL"
log "in-sync re-check again: synk (warm: digests cached) and rsync -an"
t_synk3=$(time_on alpha "synk -q -h beta -h gamma -h epsilon $SMALL")
t_rsync3=$(time_on alpha "for h in ${TARGETS[*]}; do rsync -an $SMALL/ \$h:$SMALL/ >/dev/null || exit 1; done")
for h in alpha "${TARGETS[@]}"; do hx "$h" 'rm -rf /data/bench'; done

echo
echo "synk rig benchmark ($(hx alpha 'synk --version' 2>/dev/null || echo synk), $(nproc) cores, one run)"
printf '%-58s %9s %9s %8s\n' "" "synk" "rsync" "synk/rsync"
printf '%-58s %8ss %8ss %8s\n' "first sync, $((bytes / 1048576)) MiB in $files files, alpha -> 3 hosts" \
    "$t_synk1" "$t_rsync1" "$(ratio "$t_synk1" "$t_rsync1")"
printf '%-58s %8ss %8ss %8s\n' "in-sync re-check, $NFILES files, alpha + 3 hosts, cold" \
    "$t_synk2" "$t_rsync2" "$(ratio "$t_synk2" "$t_rsync2")"
printf '%-58s %8ss %8ss %8s\n' "in-sync re-check, $NFILES files, alpha + 3 hosts, warm" \
    "$t_synk3" "$t_rsync3" "$(ratio "$t_synk3" "$t_rsync3")"
echo "(rsync: 'rsync -a' / 'rsync -an' run for each host in turn; synk: one 'synk -q -h beta -h gamma -h epsilon DIR')"
