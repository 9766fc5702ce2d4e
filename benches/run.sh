#!/usr/bin/env bash
# Every performance measure of synk in one run, each against its reference tool measured in
# the same run on the same machine, printed as one table (the README's comes from it).
#
#   benches/run.sh              (needs root: it makes three peer users and a private sshd)
#   BENCH_SMALL=1 benches/run.sh   a quick pass with smaller trees (not for the README)
#
#   P1  SHA-512 of a 1 GiB file                     vs sha512sum
#   P2  in-sync re-check, 10k files, 3 peers        vs Unison re-checking ONE pair
#   P3  first sync of 1 GiB (4 x 256 MiB), 3 peers  vs rsync -a to each peer in turn
#   P3a the same, against rsync given the ciphers synk offers (AES-GCM first): what is left
#       once the cipher is the same on both sides
#   P3s the same with the streaming copier (--copier stream)  vs rsync -a to each peer in turn
#   P3x the same 1 GiB plus a 1 GiB sparse image holding 8 MiB and 1,000 files each under two
#       hard-linked names, 3 peers                vs rsync -aHAXS to each peer in turn
#   P4  one in-sync file on 3 peers                 vs 3 parallel `ssh HOST true`
#   P5  100k files, 3 peers, in sync: client peak RSS (and the local peer's serve's), and
#       time vs Unison on ONE pair
#   P6  periodic re-check (--every), 10k files, 3 peers, sessions kept open   vs ssh HOST true
#       (P6w: the run of those that walks every tree)
#
# The peers are users bench1..3 of this machine behind an sshd on loopback, each with a home
# of its own; the client is root with a home of its own. Not a test: it never fails for being
# slow.
#   P7  1 GiB to 8 peers vs to 1 peer, every link rate-limited: benches/relay.sh on nine docker
#       hosts, run from here where Docker is available
#   P8  in-sync re-check, 10k files, 16 peers   vs 16 parallel `ssh HOST true`: benches/many.sh on
#       seventeen docker hosts, where Docker is available
#       (P8w: the same against 16 parallel `ssh HOST find` reading every entry's metadata)
#   W1–W3 far peers, 100 ms RTT on every link (benches/far.sh, after the others: it gives the
#       peer users homes of its own)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in openssh-server openssh-client rsync unison time python3 procps; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
source benches/lib.sh

small=${BENCH_SMALL:-}
n_recheck=$([[ -n $small ]] && echo 1000 || echo 10000)
n_big=$([[ -n $small ]] && echo 10000 || echo 100000)
mib_each=$([[ -n $small ]] && echo 32 || echo 256)

# Peers: users with homes below $work, reached as user@127.0.0.1 through one sshd.
bench_peers
ssh_true() { ssh -F "$work/ssh_config" -p "$port" "$1@127.0.0.1" true; }

rows=()
row() { rows+=("$(printf '%s\t%s\t%s\t%s\t%s' "$@")"); }
ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
ms() { python3 -c "print(f'{$1*1000:.0f} ms')"; }
secs() { python3 -c "print(f'{$1:.2f} s')"; }

# P1: hashing throughput (benches/hash.rs, both sides on the same file in the page cache).
head -c 1G /dev/urandom >"$work/big.bin"
SYNK_BENCH_FILE=$work/big.bin cargo bench --quiet --bench hash >"$work/hash.txt" 2>/dev/null
p1_synk=$(awk '/^synk hash/ {print $3}' "$work/hash.txt")
p1_ref=$(awk '/^sha512sum/ {print $2}' "$work/hash.txt")
row P1 "SHA-512 of 1 GiB (throughput)" "$p1_synk MB/s" "sha512sum $p1_ref MB/s" "$(python3 -c "print(f'{$p1_synk/$p1_ref:.2f}x (higher is better)')")"
rm -f "$work/big.bin"

# P2 and P6: a re-check of an in-sync tree.
make_tree "$work/client/tree" "$n_recheck"
"${synk_cmd[@]}" "$work/client/tree"        # first sync: every peer gets the tree
"${synk_cmd[@]}" "$work/client/tree"        # warm: state and digest caches written
"${synk_cmd[@]}" "$work/client/tree" || { echo "synk: the tree is not in sync" >&2; exit 1; }
synk_tree() { "${synk_cmd[@]}" "$work/client/tree"; }
unison_pair() {
    unison -batch -auto -silent -times -perms 0 -sshargs "-F $work/ssh_config -p $port" \
        "$work/client/tree" "ssh://bench1@127.0.0.1/$work/home/bench1/tree" >/dev/null 2>&1
}
unison_pair || true                           # builds Unison's archives
unison_pair || { echo "unison does not work here: no reference for P2" >&2; exit 1; }
read -r p2_synk p2_ref < <(time_each synk_tree unison_pair)
row P2 "in-sync re-check, $n_recheck files, 3 peers" "$(ms "$p2_synk")" "Unison, 1 pair: $(ms "$p2_ref")" "$(ratio "$p2_synk" "$p2_ref")"

# P6: the same re-check in periodic mode, sessions open: the runs after the first.
timeout 60 "$synk" -F "$work/ssh_config" "${hosts[@]}" --every 1s --json "$work/client/tree" \
    >"$work/every.json" 2>/dev/null &
sleep 12; kill -TERM $! 2>/dev/null || true; wait || true
# The second run walks every tree (under a watch from then on); later ones answer from memory
# where the watch saw no change. P6w is that second run.
read -r p6_synk p6_walk < <(python3 - "$work/every.json" <<'PY'
import json, sys
runs = [json.loads(l)["seconds"] for l in open(sys.argv[1]) if l.strip()]
print(min(runs[2:]) if len(runs) > 2 else "nan", runs[1] if len(runs) > 1 else "nan")
PY
)
p6_ref=$(time_it ssh_true bench1)
row P6 "periodic re-check, $n_recheck files, 3 peers" "$(ms "$p6_synk")" "ssh HOST true: $(ms "$p6_ref")" "$(ratio "$p6_synk" "$p6_ref")"
row P6w "the same, a run that walks every tree" "$(ms "$p6_walk")" "ssh HOST true: $(ms "$p6_ref")" "$(ratio "$p6_walk" "$p6_ref")"

# P4: one in-sync file; the floor is connecting to three hosts at once.
echo one >"$work/client/one.txt"
"${synk_cmd[@]}" "$work/client/one.txt"
synk_one() { "${synk_cmd[@]}" "$work/client/one.txt"; }
three_ssh() { ssh_true bench1 & ssh_true bench2 & ssh_true bench3 & wait; }
read -r p4_synk p4_ref < <(time_each synk_one three_ssh)
row P4 "one in-sync file, 3 peers" "$(ms "$p4_synk")" "3 parallel ssh true: $(ms "$p4_ref")" "$(ratio "$p4_synk" "$p4_ref")"

# P3: first sync of big files to every peer, against rsync to each in turn.
mkdir -p "$work/client/bulk"
for i in 1 2 3 4; do head -c "${mib_each}M" /dev/urandom >"$work/client/bulk/f$i"; done
clear_bulk() { for u in "${peers[@]}"; do rm -rf "$work/home/$u/bulk" "$work/home/$u/.local/state"; done; rm -rf "$work/client/.local/state"; }
first_sync() { clear_bulk; "${synk_cmd[@]}" "$work/client/bulk"; }
first_sync_stream() { clear_bulk; "${synk_cmd[@]}" --copier stream "$work/client/bulk"; }
rsync_each() {
    clear_bulk
    for u in "${peers[@]}"; do
        rsync -a -e "ssh -F $work/ssh_config -p $port" "$work/client/bulk/" "$u@127.0.0.1:$work/home/$u/bulk/"
    done
}
aes_first=aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr
rsync_each_aes() {
    clear_bulk
    for u in "${peers[@]}"; do
        rsync -a -e "ssh -F $work/ssh_config -p $port -o Ciphers=$aes_first" "$work/client/bulk/" "$u@127.0.0.1:$work/home/$u/bulk/"
    done
}
read -r p3_synk p3_ref p3a_ref p3s_synk < <(time_each first_sync rsync_each rsync_each_aes first_sync_stream)
total=$((4 * mib_each))
row P3 "first sync of $total MiB (4 files), 3 peers" "$(secs "$p3_synk")" "rsync -a to each: $(secs "$p3_ref")" "$(ratio "$p3_synk" "$p3_ref")"
row P3a "the same, rsync with synk's cipher order" "$(secs "$p3_synk")" "rsync -a, AES-GCM first: $(secs "$p3a_ref")" "$(ratio "$p3_synk" "$p3a_ref")"
row P3s "the same, streaming copier (--copier stream)" "$(secs "$p3s_synk")" "rsync -a to each: $(secs "$p3_ref")" "$(ratio "$p3s_synk" "$p3_ref")"

# P3x: the same, with what rsync -aHAXS keeps: a sparse image and a tree of hard links.
head -c 8M /dev/urandom | dd of="$work/client/bulk/disk.img" bs=1M seek=512 conv=notrunc status=none
truncate -s 1G "$work/client/bulk/disk.img"
mkdir -p "$work/client/bulk/links"
for i in $(seq 1000); do
    head -c $((1 + i % 4096)) /dev/urandom >"$work/client/bulk/links/f$i"
    ln "$work/client/bulk/links/f$i" "$work/client/bulk/links/g$i"
done
rsync_each_haxs() {
    clear_bulk
    for u in "${peers[@]}"; do
        rsync -aHAXS -e "ssh -F $work/ssh_config -p $port" "$work/client/bulk/" "$u@127.0.0.1:$work/home/$u/bulk/"
    done
}
read -r p3x_synk p3x_ref < <(time_each first_sync rsync_each_haxs)
row P3x "the same plus a sparse 1 GiB image and 1,000 hard-linked pairs" "$(secs "$p3x_synk")" "rsync -aHAXS to each: $(secs "$p3x_ref")" "$(ratio "$p3x_synk" "$p3x_ref")"
clear_bulk; rm -rf "$work/client/bulk"

# P5: a big tree, in sync: memory and time.
make_tree "$work/client/many" "$n_big"
for u in "${peers[@]}"; do cp -a "$work/client/many" "$work/home/$u/many"; chown -R "$u:$u" "$work/home/$u/many"; done
"${synk_cmd[@]}" "$work/client/many"        # records state everywhere
"${synk_cmd[@]}" "$work/client/many"        # warm
# Peak RSS of the client process alone and of the local peer's serve (its child).
read -r rss serve_rss < <(peak_rss "${synk_cmd[@]}" "$work/client/many")
synk_many() { "${synk_cmd[@]}" "$work/client/many"; }
unison_many() {
    unison -batch -auto -silent -times -perms 0 -sshargs "-F $work/ssh_config -p $port" \
        "$work/client/many" "ssh://bench1@127.0.0.1/$work/home/bench1/many" >/dev/null 2>&1
}
unison_many || true
unison_many || { echo "unison does not work here: no reference for P5" >&2; exit 1; }
urss=$( { /usr/bin/time -f '%M' bash -c "$(declare -f unison_many); work=$work port=$port unison_many" >/dev/null; } 2>&1 | tail -n1)
read -r p5_synk p5_ref < <(time_each synk_many unison_many)
row P5 "$n_big files, 3 peers, in sync: client peak RSS" "$((rss / 1024)) MB" "Unison, 1 pair: $((urss / 1024)) MB" "$(python3 -c "print(f'{$rss/$urss:.2f}x')")"
row P5s "the same, the local peer's serve" "$((serve_rss / 1024)) MB" "Unison, 1 pair: $((urss / 1024)) MB" "$(python3 -c "print(f'{$serve_rss/$urss:.2f}x')")"
row P5b "$n_big files, 3 peers, in-sync re-check" "$(secs "$p5_synk")" "Unison, 1 pair: $(secs "$p5_ref")" "$(ratio "$p5_synk" "$p5_ref")"

# P7: relay fan-out over rate-limited links, on nine docker hosts (benches/relay.sh), where Docker
# runs here; BENCH_NO_RELAY=1 leaves it out.
if [[ -z ${BENCH_NO_RELAY:-} ]] && docker info >/dev/null 2>&1; then
    if p7=$(BENCH_MIB=$([[ -n $small ]] && echo 256 || echo 1024) benches/relay.sh 2>"$work/relay.err" | tail -n1) \
        && [[ $p7 == "| P7 "* ]]; then
        p7=${p7#| }; p7=${p7% |}
        rows+=("${p7// | /$'\t'}")
    else
        echo "P7 did not run: $(tail -n3 "$work/relay.err")" >&2
    fi
elif [[ -n ${BENCH_NO_RELAY:-} ]]; then
    echo "P7 left out: BENCH_NO_RELAY is set" >&2
else
    echo "P7 left out: no Docker here (benches/relay.sh)" >&2
fi

# P8: many peers, on seventeen docker hosts (benches/many.sh), where Docker runs here; BENCH_NO_MANY=1
# leaves it out.
if [[ -z ${BENCH_NO_MANY:-} ]] && docker info >/dev/null 2>&1; then
    if p8=$(BENCH_FILES=$n_recheck benches/many.sh 2>"$work/many.err" | grep '^| P8') && [[ $p8 == "| P8 "* ]]; then
        while IFS= read -r row; do
            row=${row#| }; row=${row% |}
            rows+=("${row// | /$'\t'}")
        done <<<"$p8"
    else
        echo "P8 did not run: $(tail -n3 "$work/many.err")" >&2
    fi
elif [[ -n ${BENCH_NO_MANY:-} ]]; then
    echo "P8 left out: BENCH_NO_MANY is set" >&2
else
    echo "P8 left out: no Docker here (benches/many.sh)" >&2
fi

# W1–W3: far peers, every link through a forwarder that adds latency (benches/far.sh).
if far=$(benches/far.sh 2>"$work/far.err"); then
    while IFS= read -r line; do
        [[ $line == "| W"* ]] || continue
        line=${line#| }; line=${line% |}
        rows+=("${line// | /$'\t'}")
    done <<<"$far"
else
    echo "W1-W3 did not run: $(tail -n3 "$work/far.err")" >&2
fi

echo
echo "synk $("$synk" --version | cut -d' ' -f2), $(nproc) cores, best of 5 where timed (synk and its reference taking turns)"
printf '| # | measure | synk | reference | ratio |\n| --- | --- | --- | --- | --- |\n'
for r in "${rows[@]}"; do
    IFS=$'\t' read -r a b c d e <<<"$r"
    printf '| %s | %s | %s | %s | %s |\n' "$a" "$b" "$c" "$d" "$e"
done
