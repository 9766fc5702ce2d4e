# Sourced by tests/e2e/run.sh: the scenario many16, on seventeen hosts of their own (docker/many.yml,
# started and removed here; the image is the rig's, already built by docker/rig up, never pulled).
# m00 runs synk; m01 … m16 are its peers, reached by name, and reach each other (relays).

MANY_P=synk-many
MANY_YML=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../docker" && pwd)/many.yml
MANY_PEERS=(m01 m02 m03 m04 m05 m06 m07 m08 m09 m10 m11 m12 m13 m14 m15 m16)
MANY_D=/data/many

many_compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -p "$MANY_P" -f "$MANY_YML" "$@"
    else
        docker-compose -p "$MANY_P" -f "$MANY_YML" "$@"
    fi
}
# mx HOST SCRIPT [ARG…]: a bash script as synk on a many host
mx() { local h=$1 s=$2; shift 2; docker exec -u synk "$MANY_P-$h" bash -c "cd && $s" bash "$@"; }

# every file under $MANY_D: name, mode, mtime, size, SHA-512 (the directories: name and mode)
MANY_SUMS='cd /data/many 2>/dev/null || { echo "<absent>"; exit 0; }
export LC_ALL=C
find . -type d -print0 | sort -z | xargs -0 stat -c "%n d %a"
find . -type f -print0 | sort -z | xargs -0 stat -c "%n f %a %Y %s"
find . -type f -print0 | sort -z | xargs -0 sha512sum'

# many_expect_all LABEL: every peer holds exactly m00's tree
many_expect_all() {
    local ref h
    ref=$(mx m00 "$MANY_SUMS")
    for h in "${MANY_PEERS[@]}"; do
        mx "$h" "$MANY_SUMS" >"$WORK/many.$h"
        if [[ $(<"$WORK/many.$h") != "$ref" ]]; then
            local d lines
            d=$(diff <(printf '%s\n' "$ref") "$WORK/many.$h" | grep '^[<>]' | head -n 6 \
                | sed -e 's/^</m00:/' -e "s/^>/$h:/")
            mapfile -t lines <<<"$d"
            fail "$1: host $h does not hold m00's tree" "${lines[@]}"
        fi
    done
}

many_up() {
    docker image inspect synk-rig-peer:rsync >/dev/null 2>&1 \
        || { fail "image synk-rig-peer:rsync is missing: docker/rig up builds it"; return 1; }
    many_compose up -d --no-build --remove-orphans >"$WORK/many-up.log" 2>&1 \
        || { fail "docker/many.yml did not start" "$(tail -n 5 "$WORK/many-up.log")"; return 1; }
    local deadline=$((SECONDS + 120))
    # m00 reaches every peer, and a peer reaches the others (relays pass units on)
    until mx m00 'for h in "$@"; do ssh -o BatchMode=yes -o ConnectTimeout=5 "$h" true </dev/null || exit 1; done' \
            "${MANY_PEERS[@]}" >/dev/null 2>&1 \
        && mx m16 'for h in "$@"; do ssh -o BatchMode=yes -o ConnectTimeout=5 "$h" true </dev/null || exit 1; done' \
            "${MANY_PEERS[@]}" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { fail "the 17 hosts of docker/many.yml are not reachable over ssh"; return 1; }
        sleep 1
    done
}

many_down() { many_compose down -v --remove-orphans >/dev/null 2>&1 || true; }

# run_many ARG…: synk on m00 to every peer; sets RC, $WORK/out, $WORK/err (as run_synk does)
run_many() {
    local hosts=() h
    for h in "${MANY_PEERS[@]}"; do hosts+=(-h "$h"); done
    LAST_CMD="m00\$ synk $* ${hosts[*]} $MANY_D"
    docker exec -u synk -w /home/synk "$MANY_P-m00" timeout -k 10 "$SYNK_TIMEOUT" synk "$@" "${hosts[@]}" "$MANY_D" \
        >"$WORK/out" 2>"$WORK/err"
    RC=$?
    [[ -z ${E2E_VERBOSE:-} ]] || show_output
}

s_many16() {   # one run to 16 peers: 200 small files and an 8 MiB one, relayed; a change on one peer reaches
               # all 16 on the next run; then an in-sync run copies nothing
    many_down
    if many_up; then many16_body; fi
    many_down
}

many16_body() {
    local t0=$T0
    # 4 directories of 50 files, 1–40 KiB each (about 4 MiB), and one file of 8 MiB: big enough for rsync
    # (smaller ones travel in the serve channel), so the targets pass it on to each other
    mx m00 'set -e; mkdir -p /data/many
        for d in 1 2 3 4; do mkdir -p /data/many/dir$d
            for i in $(seq 50); do head -c $(( (i * 797 + d * 131) % 40960 + 1024 )) /dev/urandom >/data/many/dir$d/f$i; done
        done
        head -c 8M /dev/urandom >/data/many/dir1/big.bin
        chmod 600 /data/many/dir2/f7
        find /data/many -type f -exec touch -m -d "@$1" {} +' "$t0" \
        || { fail "fixture: the tree on m00"; return; }
    [[ $(mx m00 'find /data/many -type f | wc -l') == 201 ]] || fail "fixture: m00 does not hold 201 files"

    run_many -v
    expect_rc 0
    many_expect_all "first run"
    # relay fan-out: some target fed another one
    grep -qE '^synk: rsync m(0[1-9]|1[0-6]) -> m(0[1-9]|1[0-6]): ' "$WORK/out" \
        || { fail "no target passed the big file on to another (relay fan-out)"; show_output; }

    # one peer edits a file and deletes another: both reach the other 15 and m00
    mx m07 'set -e; printf "edited on m07\n" >/data/many/dir2/f10; touch -m -d "@$1" /data/many/dir2/f10
        rm /data/many/dir3/f20' $((t0 + 600)) || { fail "fixture: the change on m07"; return; }
    run_many -v
    expect_rc 0
    [[ $(mx m00 'cat /data/many/dir2/f10') == "edited on m07" ]] || fail "m07's edit did not reach m00"
    mx m00 '[ ! -e /data/many/dir3/f20 ]' || fail "m07's deletion did not reach m00"
    many_expect_all "after the change on m07"

    # in sync: exit 0, nothing decided, nothing sent
    run_many --json
    expect_rc 0
    if ! jq -e '.exit == 0 and .errors == [] and (.roots | length) == 1 and all(.roots[]; (.entries | length) == 0 and .bytes == 0
                and .literal_bytes == 0)' "$WORK/out" >/dev/null; then
        fail "the in-sync run is not quiet per --json"; show_output
    fi
    [[ -s $WORK/err ]] && { fail "the in-sync run wrote to stderr"; show_output; }
    many_expect_all "after the in-sync run"
}
