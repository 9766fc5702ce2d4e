#!/usr/bin/env bash
# A million files (the P5 set-up of benches/run.sh at scale): the same tree of small random files
# on the client and three peers (users behind a private sshd on loopback), then a first sync
# (identical trees, no history), a second run and an in-sync re-check; then another tree on the
# client alone, synced to the three empty peers. Each with its time and the peak RSS of the
# client process and of the local peer's serve (the kernel's VmHWM, sampled while it runs), and
# the largest of the three peers' serves (GNU time's, where /usr/bin/time is there).
# Making the trees takes minutes; they need about 16 GB and 8M inodes.
#
#   benches/million.sh            (needs root)
#   N=200000 benches/million.sh   another size
#   PARTS=same benches/million.sh    the runs over identical trees only
#   PARTS=fresh benches/million.sh   the first sync to empty peers only
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
n=${N:-1000000}
bench_peers

parts=${PARTS:-same fresh}

# The peers' serves run under GNU time, which adds each one's peak RSS (KiB, with any rsync it
# runs) to a file.
rss_log=$work/serves.rss
if [[ -x /usr/bin/time ]]; then
    rm "$work/bin/synk"
    printf '#!/bin/sh\nexec /usr/bin/time -a -o %s -f %%M %s "$@"\n' "$rss_log" "$synk" >"$work/bin/synk"
    chmod 755 "$work/bin/synk"
fi

# measure LABEL [TREE]: one run, its time and the peak RSS figures.
measure() {
    local s e rss serve peers
    : >"$rss_log"
    chmod 666 "$rss_log"
    s=$(date +%s%N)
    read -r rss serve < <(peak_rss "${synk_cmd[@]}" "$work/client/${2:-many}")
    e=$(date +%s%N)
    peers=$(sort -n "$rss_log" | tail -1)
    printf '| %s | %.1f s | %d MB | %d MB | %s |\n' "$1" "$(( (e - s) / 1000000 ))e-3" $((rss / 1024)) $((serve / 1024)) \
        "${peers:+$((peers / 1024)) MB}"
}

if [[ $parts == *same* ]]; then
    t0=$SECONDS
    make_tree "$work/client/many" "$n"
    for u in "${peers[@]}"; do cp -a "$work/client/many" "$work/home/$u/many"; chown -R "$u:$u" "$work/home/$u/many"; done
    echo "$n files on 4 hosts, made in $((SECONDS - t0)) s"
fi
printf '| %s files, 3 peers | time | client peak RSS | local serve peak RSS | peers\x27 serves, the largest |\n| --- | --- | --- | --- | --- |\n' "$n"
if [[ $parts == *same* ]]; then
    measure "first sync (identical trees, no history)"
    measure "second run"
    measure "in-sync re-check"
fi
if [[ $parts == *fresh* ]]; then
    make_tree "$work/client/fresh" "$n"
    measure "first sync to three empty peers" fresh
fi
