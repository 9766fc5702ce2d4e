#!/usr/bin/env bash
# synk end-to-end scenarios on the docker rig (docker/rig test runs this after `docker/rig up`).
#
#   tests/e2e/run.sh [SCENARIO…]     all scenarios, or only the named ones (see SCENARIOS below)
#   E2E_VERBOSE=1 tests/e2e/run.sh …  also show every synk command with its stdout/stderr
#
# Every scenario sets files on chosen hosts through `docker exec`, runs synk as user synk from one host, and
# checks every host's tree (per entry: type, mode, mtime, size and SHA-512 of content; symlink targets), not
# just synk's exit code. The expected result of a sync is computed from the hosts' trees before it: every
# entry present anywhere, taken from the host with the newest mtime.
# Output: one line per scenario (ok/FAIL), details for failures (scenario, host, expected vs actual), then
# the line `N passed, M failed`. Exit status 1 if anything failed.
set -uo pipefail

P=synk-rig
HOSTS=(alpha beta gamma delta)
NET=synk-rig-net
SYNK_TIMEOUT=${SYNK_TIMEOUT:-600}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/synk-e2e.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
T0=$(( $(date +%s) - 86400 ))          # base mtime for fixtures: a day ago, so "newest" is always explicit

declare -A HOME_OF
PASSED=0 FAILED=0 FAILED_NAMES=() SCEN="" SCEN_FAILS=0

# ---------------------------------------------------------------- plumbing

c() { echo "$P-$1"; }

# hx HOST SCRIPT [ARG…]: run a bash script as synk on HOST, in its home directory
hx() { local h=$1 s=$2; shift 2; docker exec -u synk "$(c "$h")" bash -c "cd && $s" bash "$@"; }
# hxs HOST [ARG…] <<'EOF' … : the same with the script on stdin
hxs() { local h=$1; shift; docker exec -i -u synk "$(c "$h")" bash -s -- "$@"; }
# fx/fxs: hx/hxs for fixtures: a fixture that fails fails the scenario (it must never pass vacuously)
fx() { hx "$@" || fail "fixture on host $1 failed (exit $?): ${2:0:120}"; }
fxs() { hxs "$@" || fail "fixture script on host $1 failed (exit $?)"; }
hroot() { local h=$1 s=$2; shift 2; docker exec -u root "$(c "$h")" bash -c "$s" bash "$@"; }

fail() {
    SCEN_FAILS=$((SCEN_FAILS + 1))
    printf '  FAIL [%s] %s\n' "$SCEN" "$1"
    shift
    local l
    for l in "$@"; do printf '       %s\n' "$l"; done
}

# run_synk HOST ARG…: synk as user synk on HOST from its home dir; sets RC, $WORK/out, $WORK/err
run_synk() {
    local h=$1; shift
    LAST_CMD="$h\$ synk $*"
    docker exec -u synk -w "${HOME_OF[$h]}" "$(c "$h")" timeout -k 10 "$SYNK_TIMEOUT" synk "$@" \
        >"$WORK/out" 2>"$WORK/err"
    RC=$?
    [[ -z ${E2E_VERBOSE:-} ]] || show_output
}
# run_synk_sh HOST SCRIPT: like run_synk, but the synk command line is bash (for arguments docker exec
# cannot carry, e.g. non-UTF-8 bytes); the script runs in the home dir and should `exec synk …`
run_synk_sh() {
    local h=$1 s=$2
    LAST_CMD="$h\$ $s"
    docker exec -u synk -w "${HOME_OF[$h]}" "$(c "$h")" timeout -k 10 "$SYNK_TIMEOUT" bash -c "$s" \
        >"$WORK/out" 2>"$WORK/err"
    RC=$?
    [[ -z ${E2E_VERBOSE:-} ]] || show_output
}

show_output() {
    printf '       command: %s (exit %s)\n' "$LAST_CMD" "$RC"
    sed -e 's/^/       stdout: /' "$WORK/out" | head -n 40
    sed -e 's/^/       stderr: /' "$WORK/err" | head -n 40
}

expect_rc() {
    local want=$1
    if [[ $RC != "$want" ]]; then
        fail "synk exit status: expected $want, actual $RC"
        show_output
    fi
}

# ---------------------------------------------------------------- tree manifests

# One line per entry under PATH (the root is "."), tab-separated, names %q-quoted (newlines, tabs, non-UTF-8
# bytes made visible): NAME f MODE MTIME SIZE:SHA512[0:32] | NAME d MODE MTIME - | NAME l - MTIME TARGET |
# NAME o MODE MTIME - (other kinds); or "<absent>".
MANIFEST_SH='
export LC_ALL=C
p=$1
if [ ! -e "$p" ] && [ ! -L "$p" ]; then echo "<absent>"; exit 0; fi
find "$p" -print0 | sort -z | while IFS= read -r -d "" e; do
    n=${e#"$p"}; n=${n:-.}
    if [ -L "$e" ]; then
        printf "%q\tl\t-\t%s\t%q\n" "$n" "$(stat -c %Y "$e")" "$(readlink "$e")"
    elif [ -d "$e" ]; then
        read -r m t <<<"$(stat -c "%a %Y" "$e")"; printf "%q\td\t%s\t%s\t-\n" "$n" "$m" "$t"
    elif [ -f "$e" ]; then
        read -r m t s <<<"$(stat -c "%a %Y %s" "$e")"; h=$(sha512sum <"$e")
        printf "%q\tf\t%s\t%s\t%s:%s\n" "$n" "$m" "$t" "$s" "${h:0:32}"
    else
        read -r m t <<<"$(stat -c "%a %Y" "$e")"; printf "%q\to\t%s\t%s\t-\n" "$n" "$m" "$t"
    fi
done'

# path of a home-relative REL (no leading /) or absolute path on HOST
hpath() { if [[ $2 == /* ]]; then echo "$2"; else echo "${HOME_OF[$1]}/$2"; fi; }

sortm() { LC_ALL=C sort -t "$(printf '\t')" -k1,1; }
manifest() { docker exec -u synk "$(c "$1")" bash -c "$MANIFEST_SH" bash "$(hpath "$1" "$2")"; }

# what must match after a sync: directory and symlink mtimes are not compared (a directory's mtime is the
# union's business; symlink times are not promised)
norm() { awk -F'\t' -v OFS='\t' '$2 == "d" || $2 == "l" { $4 = "-" } { print }'; }

# snapshot NAME PATH: record every host's manifest of PATH
snapshot() {
    local tag=$1 path=$2 h
    for h in "${HOSTS[@]}"; do manifest "$h" "$path" >"$WORK/$tag.$h"; done
}

# union TAG: expected tree after a sync, from snapshot TAG: every entry, from the host with the newest mtime
union() {
    local tag=$1 h
    for h in "${HOSTS[@]}"; do
        grep -v '^<absent>$' "$WORK/$tag.$h"
    done | awk -F'\t' '{ n = $1; if (!(n in best) || $4 + 0 > bt[n]) { bt[n] = $4 + 0; best[n] = $0 } }
                       END { for (n in best) print best[n] }' | sortm
}

# compare_tree HOST PATH EXPECTED_FILE [LABEL]: HOST's tree at PATH equals EXPECTED_FILE (after norm)
compare_tree() {
    local h=$1 path=$2 exp=$3 label=${4:-content}
    manifest "$h" "$path" | norm | sortm >"$WORK/actual.$h"
    norm <"$exp" | sortm >"$WORK/expected.$h"
    if ! cmp -s "$WORK/expected.$h" "$WORK/actual.$h"; then
        local d
        d=$(diff "$WORK/expected.$h" "$WORK/actual.$h" | grep '^[<>]' | head -n 20 \
            | sed -e 's/^</expected:/' -e 's/^>/actual:  /' -e 's/\t/  /g')
        mapfile -t lines <<<"$d"
        fail "host $h: $label of $(hpath "$h" "$path") differs (entry mode mtime size:sha512)" "${lines[@]}"
    fi
}

# expect_converged TAG PATH [HOST…]: the listed hosts (default all) hold the union of snapshot TAG
expect_converged() {
    local tag=$1 path=$2 h; shift 2
    local hosts=("$@"); ((${#hosts[@]})) || hosts=("${HOSTS[@]}")
    union "$tag" >"$WORK/$tag.union"
    for h in "${hosts[@]}"; do compare_tree "$h" "$path" "$WORK/$tag.union"; done
}

# fail_diff MESSAGE BEFORE_FILE AFTER_FILE MAX_LINES BEFORE_LABEL AFTER_LABEL: fail with the changed lines
fail_diff() {
    local d lines
    d=$(diff "$2" "$3" | grep '^[<>]' | head -n "$4" | sed -e "s/^</$5/" -e "s/^>/$6/")
    mapfile -t lines <<<"$d"
    fail "$1" "${lines[@]}"
}

# expect_unchanged TAG PATH [HOST…]: the listed hosts still hold exactly what snapshot TAG recorded
expect_unchanged() {
    local tag=$1 path=$2 h; shift 2
    local hosts=("$@"); ((${#hosts[@]})) || hosts=("${HOSTS[@]}")
    for h in "${hosts[@]}"; do
        # directories and symlinks: full manifest, including mtimes
        manifest "$h" "$path" | sortm >"$WORK/actual.$h"
        sortm <"$WORK/$tag.$h" >"$WORK/expected.$h"
        cmp -s "$WORK/expected.$h" "$WORK/actual.$h" ||
            fail_diff "host $h: $(hpath "$h" "$path") changed but must not have" \
                "$WORK/expected.$h" "$WORK/actual.$h" 20 "before:" "after: "
    done
}

# inode/ctime listing: a rerun that changes nothing keeps every inode, ctime and mtime
INODES_SH='export LC_ALL=C; [ -e "$1" ] || { echo "<absent>"; exit 0; }
find "$1" -print0 | sort -z | xargs -0 stat -c "%i %Z %Y %a %n"'
inodes() { docker exec -u synk "$(c "$1")" bash -c "$INODES_SH" bash "$(hpath "$1" "$2")"; }
snapshot_inodes() { local h; for h in "${HOSTS[@]}"; do inodes "$h" "$2" >"$WORK/$1.ino.$h"; done; }
expect_same_inodes() {
    local tag=$1 path=$2 h
    for h in "${HOSTS[@]}"; do
        inodes "$h" "$path" >"$WORK/ino.now.$h"
        cmp -s "$WORK/$tag.ino.$h" "$WORK/ino.now.$h" ||
            fail_diff "host $h: entries under $(hpath "$h" "$path") were touched" \
                "$WORK/$tag.ino.$h" "$WORK/ino.now.$h" 10 "before (inode ctime mtime mode name):" "after:"
    done
}

# ---------------------------------------------------------------- fixtures

# put HOST PATH CONTENT MTIME_OFFSET [MODE]: a file with exact content, mtime T0+offset, mode
put() {
    local h=$1 path=$2 content=$3 off=$4 mode=${5:-644}
    printf %s "$content" | docker exec -i -u synk "$(c "$h")" bash -c \
        'cd && mkdir -p -- "$(dirname -- "$1")" && cat >"$1" && chmod "$3" "$1" && touch -m -d "@$2" "$1"' \
        bash "$(hpath "$h" "$path")" "$((T0 + off))" "$mode" \
        || fail "fixture: writing $path on host $h failed"
}
# put_random HOST PATH MIB MTIME_OFFSET: a file of random content
put_random() {
    local h=$1 path=$2 mib=$3 off=$4
    fx "$h" 'mkdir -p -- "$(dirname -- "$1")" && head -c "$2M" /dev/urandom >"$1" && touch -m -d "@$3" "$1"' \
        "$(hpath "$h" "$path")" "$mib" "$((T0 + off))"
}
# every scenario starts from nothing remembered: trees, sync state and kept versions
clean() {
    local h
    for h in "${HOSTS[@]}"; do
        fx "$h" 'rm -rf ~/e2e /data/e2e ~/.local/state/synk; mkdir -p ~/e2e /data/e2e'
    done
}

stdout_has() { grep -qE -- "$1" "$WORK/out"; }
stderr_has() { grep -qE -- "$1" "$WORK/err"; }

wait_ssh() {   # wait_ssh HOST: HOST's sshd answers alpha..delta by name again
    local h=$1 deadline=$((SECONDS + 90)) o
    while ((SECONDS < deadline)); do
        local ok=1
        for o in "${HOSTS[@]}"; do
            [[ $o == "$h" ]] && continue
            docker exec -u synk "$(c "$o")" ssh -o BatchMode=yes -o ConnectTimeout=5 "$h" true \
                </dev/null >/dev/null 2>&1 || { ok=0; break; }
        done
        ((ok)) && return 0
        sleep 1
    done
    fail "host $h did not come back (ssh)"
    return 1
}

# make sure every host is running and connected (a failed fault scenario must not break the next one)
heal() {
    local h
    for h in "${HOSTS[@]}"; do
        hroot "$h" 'tc qdisc del dev eth0 root' >/dev/null 2>&1 || true
        if [[ $(docker inspect -f '{{.State.Running}}' "$(c "$h")" 2>/dev/null) != true ]]; then
            docker start "$(c "$h")" >/dev/null; wait_ssh "$h"
        fi
        if ! docker inspect -f '{{json .NetworkSettings.Networks}}' "$(c "$h")" | grep -q "\"$NET\""; then
            docker network connect --alias "$h" "$NET" "$(c "$h")"; wait_ssh "$h"
        fi
    done
}

# ---------------------------------------------------------------- scenarios

PEERS_FROM_ALPHA=(-h beta -h gamma -h delta)

s_local_master() {   # the client itself has the newest version
    local f=e2e/local/f.txt
    put alpha $f "alpha v3 (newest)" 300 640
    put beta  $f "beta v1" 100 644
    put gamma $f "gamma v2" 200 600
    put delta $f "delta v1" 150 755
    snapshot pre $f
    run_synk alpha -v "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$f"
    expect_rc 0
    expect_converged pre $f
    stdout_has '^master: ' || { fail "-v printed no 'master: HOST PATH' line"; show_output; }
}

s_remote_master() {  # master is a remote host: remote -> remote copies (ssh beta rsync … gamma:…), -> local
    local f=e2e/remote/f.txt
    put alpha $f "alpha v1" 100 644
    # 100 KiB: big enough for rsync (smaller files travel in the serve channel)
    put beta  $f "beta v4 (newest) $(head -c 100000 /dev/zero | tr '\0' x)" 400 600
    put gamma $f "gamma v2" 200 644
    put delta $f "delta v3" 300 644
    snapshot pre $f
    run_synk alpha -v "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$f"
    expect_rc 0
    expect_converged pre $f
    # the beta -> gamma copy must be beta's own rsync to gamma (both have rsync and reach each other)
    stdout_has '^synk: .*rsync.*gamma:' \
        || { fail "no remote->remote rsync line (synk: … rsync … gamma:…) in -v output"; show_output; }
    if stdout_has 'cannot reach .* itself'; then
        fail "a remote master could not reach a target by name (fell back to streaming via the client)"
        show_output
    fi
}

s_missing_some() {   # a file missing on some hosts; and a whole PATH missing on some hosts
    local d=e2e/missing
    local h; for h in "${HOSTS[@]}"; do fx "$h" 'mkdir -p "$1"' "$(hpath "$h" $d)"; done
    put beta  $d/only-beta.txt "only on beta" 100 644
    put alpha $d/two.txt "alpha older" 100 600
    put gamma $d/two.txt "gamma newer" 200 640
    put delta $d/sub/x "only on delta, nested" 50 644
    put gamma e2e/missing-root/f "the PATH exists only on gamma" 10 600
    snapshot pre $d
    snapshot pre2 e2e/missing-root
    run_synk alpha -v "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d" "${HOME_OF[alpha]}/e2e/missing-root"
    expect_rc 0
    expect_converged pre $d
    expect_converged pre2 e2e/missing-root
    # home-relative: gamma's copies are under its own home, nothing under /home/synk there
    hx gamma '[ ! -e /home/synk ]' || fail "host gamma: /home/synk exists (home-relative path resolved against the client's home)"
}

s_dir_union() {      # directory union, nested dirs, a symlink; run from the host with a different home
    local d=e2e/union
    put alpha $d/a.txt "a from alpha" 100 644
    put alpha $d/sub/b.txt "b from alpha" 110 600
    put beta  $d/sub/c.txt "c from beta" 120 644
    put beta  $d/sub/deep/deeper/e.txt "e from beta, 3 levels down" 130 644
    put gamma $d/x.sh "#!/bin/sh\necho x\n" 140 755
    fx gamma 'cd "$1" && ln -s sub/b.txt link-to-b && touch -h -d "@$2" link-to-b' "$(hpath gamma $d)" $((T0 + 150))
    put delta $d/sub/deep/f.txt "f from delta" 160 640
    put delta $d/common.txt "common, delta's (newest)" 300 644
    put alpha $d/common.txt "common, alpha's" 200 644
    put beta  $d/common.txt "common, beta's" 250 644
    fx beta 'mkdir -p "$1"/empty-dir' "$(hpath beta $d)"
    snapshot pre $d
    run_synk gamma -v -h alpha -h beta -h delta "${HOME_OF[gamma]}/$d"
    expect_rc 0
    expect_converged pre $d
    # the symlink must stay a symlink with the same target everywhere (checked in the manifest), and the
    # tree must not have been written under gamma's home layout on the others
    local h; for h in alpha beta delta; do
        hx "$h" '[ ! -e /srv/home ]' || fail "host $h: /srv/home exists (gamma's home leaked into a path)"
    done
}

s_norsync_master() { # delta (no rsync) is the master; client alpha; targets alpha (local), beta, gamma
    local d=e2e/nors-master
    put delta $d/f.txt "delta's newest" 500 640
    put delta $d/g.bin "$(head -c 200000 /dev/urandom | base64)" 500 600
    put alpha $d/f.txt "alpha old" 100 644
    put beta  $d/f.txt "beta old" 200 644
    snapshot pre $d
    run_synk alpha -v "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d"
    expect_rc 0
    expect_converged pre $d
}

s_norsync_target() { # gamma (remote) is master, delta (no rsync) a target; client beta
    local d=e2e/nors-target
    put gamma $d/f.txt "gamma's newest" 500 600
    put gamma $d/sub/h.txt "$(head -c 100000 /dev/urandom | base64)" 450 644
    put delta $d/f.txt "delta old" 100 644
    snapshot pre $d
    run_synk beta -v -h alpha -h gamma -h delta "${HOME_OF[beta]}/$d"
    expect_rc 0
    expect_converged pre $d
}

s_norsync_client() { # synk run on delta (no rsync), delta's version newest: local master without rsync
    local d=e2e/nors-client
    put delta $d/f.txt "delta's newest, from delta" 500 640
    put alpha $d/f.txt "alpha old" 100 644
    put gamma $d/f.txt "gamma old" 300 644
    snapshot pre $d
    run_synk delta -v -h alpha -h beta -h gamma "${HOME_OF[delta]}/$d"
    expect_rc 0
    expect_converged pre $d
}

s_hostile_names() {  # names with spaces, quotes, $(), ;, leading -, newline, non-UTF-8 bytes
    local d=e2e/hostile
    local h; for h in "${HOSTS[@]}"; do fx "$h" 'mkdir -p "$1"' "$(hpath "$h" $d)"; done
    fxs beta "$(hpath beta $d)" $((T0 + 100)) <<'EOF'
set -e; cd "$1"; t=$2
names=('with space' "it's" 'dq"uote' '$(touch PWNED)' '`touch PWNED2`' 'semi;colon' '-leading-dash' '--rsync-opt=x'
       $'new\nline' $'bad\xff\xfebytes' 'back\slash' 'star*' '..dots' $'tab\there' '-' 'a&b|c>d')
mkdir -p -- 'dir with space/$(id)' $'-dir\n2'
for n in "${names[@]}" 'dir with space/$(id)/inner;x' $'-dir\n2/-f'; do
    printf 'content of <%s>\n' "$n" >"$n"; touch -m -d "@$t" -- "./$n"
done
ln -s 'with space' 'link to space'
EOF
    fxs delta "$(hpath delta $d)" $((T0 + 200)) <<'EOF'
set -e; cd "$1"
printf 'from delta\n' >$'\xe9t\xe9 latin1 $(x);y'; touch -m -d "@$2" -- $'\xe9t\xe9 latin1 $(x);y'
EOF
    put alpha "$d/semi;colon" "alpha's older semi;colon" 50 600
    snapshot pre $d
    run_synk alpha -v "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d"
    expect_rc 0
    expect_converged pre $d

    # the PATH argument itself hostile (and non-UTF-8). The name travels as a bash $'…' word (ASCII), so
    # neither this script nor docker exec (which mangles non-UTF-8 argv) carries the raw bytes.
    local q
    q=$(cat <<'EOF'
$'-x;y $(touch PWNED3) \x27q\x27 "dq"\n\xff'
EOF
)
    for h in "${HOSTS[@]}"; do fx "$h" 'mkdir -p e2e/hostile2'; done
    fx gamma "n=$q; f=e2e/hostile2/\$n; echo 'hostile PATH argument' >\"\$f\"; chmod 600 -- \"\$f\"; touch -m -d @$((T0 + 100)) -- \"\$f\""
    snapshot pre2 e2e/hostile2
    run_synk_sh gamma "n=$q; exec synk -v -h alpha -h beta -h delta -- \"\$HOME/e2e/hostile2/\$n\""
    expect_rc 0
    expect_converged pre2 e2e/hostile2

    for h in "${HOSTS[@]}"; do
        local found
        found=$(hroot "$h" 'find / -xdev -name "PWNED*" 2>/dev/null')
        [[ -z $found ]] || fail "host $h: a name was run by a shell: $found exists"
    done
}

s_big_file() {       # a 200 MB file (absolute, non-home path); one target without rsync
    local f=/data/e2e/big/big.bin
    put_random gamma $f 200 500
    put_random alpha $f 200 100
    snapshot pre $f
    local t=$SECONDS
    run_synk alpha -v "${PEERS_FROM_ALPHA[@]}" $f
    printf '       (200 MB to 3 hosts: %ss)\n' $((SECONDS - t))
    expect_rc 0
    expect_converged pre $f
}

s_relay_units() {    # two units of ~70 MB: the rsync targets pass them to each other; delta streams
    local d=/data/e2e/relay
    put_random alpha $d/one.bin 70 100
    put_random alpha $d/sub/two.bin 70 100
    snapshot pre $d
    run_synk alpha -v "${PEERS_FROM_ALPHA[@]}" $d
    expect_rc 0
    expect_converged pre $d
    if ! stdout_has '^synk: rsync (beta|gamma) -> (beta|gamma): '; then
        fail "no target passed a unit on"; show_output
    fi
}

s_rerun_noop() {     # second run over an in-sync tree changes nothing: same inodes, ctimes, mtimes
    local d=e2e/rerun
    put alpha $d/a.txt "a" 100 644
    put beta  $d/sub/b.txt "b" 200 600
    fx gamma 'mkdir -p "$1" && ln -sfn sub/b.txt "$1"/l' "$(hpath gamma $d)"
    put_random delta $d/big.bin 20 300
    snapshot pre $d
    run_synk alpha -v "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d"
    expect_rc 0
    expect_converged pre $d
    snapshot_inodes first $d
    sleep 1.1                              # a rewrite would show in ctime
    run_synk alpha -v "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d"
    expect_rc 0
    expect_same_inodes first $d
    if stdout_has '^synk: (rsync|stream|ssh)'; then fail "rerun copied something"; show_output; fi
}

s_conflict() {       # equal newest mtime, different content: both kept (conflict copy everywhere), exit 3
    local f=e2e/conflict/c.txt
    put alpha $f "alpha's version" 200 644
    put beta  $f "beta's version!" 200 644
    put gamma $f "gamma older" 100 644
    # kind clash: a file on one host, a directory on another: the directory keeps the name
    put gamma e2e/conflict/kind "a file on gamma" 100 644
    put delta e2e/conflict/kind/inside "a dir on delta" 100 644
    # an unrelated PATH in the same run still syncs
    put alpha e2e/conflict-ok/g.txt "fine, newest" 300 644
    put beta  e2e/conflict-ok/g.txt "fine, older" 100 644
    snapshot preok e2e/conflict-ok
    run_synk alpha -v "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/e2e/conflict" "${HOME_OF[alpha]}/e2e/conflict-ok"
    expect_rc 3
    stderr_has 'conflict: .*c\.txt' || { fail "stderr names no conflict on c.txt"; show_output; }
    stderr_has 'conflict: .*kind' || { fail "stderr names no conflict on kind (file vs dir)"; show_output; }
    local h want
    want=$(hx alpha 'cat ~/e2e/conflict/c.txt')
    for h in "${HOSTS[@]}"; do
        local got copies
        got=$(hx "$h" 'cat ~/e2e/conflict/c.txt')
        [[ $got == "$want" ]] || fail "host $h: c.txt is [$got], expected [$want]"
        copies=$(hx "$h" 'cat ~/e2e/conflict/c.synk-conflict-*.txt 2>/dev/null')
        [[ "$want$copies" == *"alpha's version"* && "$want$copies" == *"beta's version!"* ]] \
            || fail "host $h: both versions of c.txt not kept (name: [$got], copies: [$copies])"
        [[ $(hx "$h" 'cat ~/e2e/conflict/kind/inside') == "a dir on delta" ]] || fail "host $h: kind/ is not delta's directory"
        [[ $(hx "$h" 'cat ~/e2e/conflict/kind.synk-conflict-*-gamma 2>/dev/null') == "a file on gamma" ]] \
            || fail "host $h: gamma's file 'kind' not kept as a conflict copy"
    done
    expect_converged preok e2e/conflict-ok
    run_synk alpha "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/e2e/conflict" "${HOME_OF[alpha]}/e2e/conflict-ok"
    expect_rc 0
    [[ -s $WORK/err ]] && { fail "the run after the conflict is not quiet"; show_output; }
}
s_dry_run() {        # -n reports but changes nothing
    local d=e2e/dry
    put alpha $d/f.txt "alpha newest" 300 600
    put beta  $d/f.txt "beta old" 100 644
    put gamma $d/sub/only-gamma "only gamma" 100 644
    snapshot pre $d
    snapshot_inodes pre $d
    run_synk alpha -n -v "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d"
    [[ $RC == 4 ]] || { fail "dry run exit status $RC, expected 4 (changes pending)"; show_output; }
    [[ -s $WORK/out ]] || { fail "dry run -v printed nothing (should report what would be copied)"; show_output; }
    expect_unchanged pre $d
    expect_same_inodes pre $d
}

# a fault scenario: DEAD is out while synk runs from alpha; the others converge, DEAD is named, exit 1; when
# DEAD is back a rerun converges everything
fault_common() {
    local dead=$1 down=$2 up=$3 d=$4
    put alpha $d/f.txt "alpha old" 100 644
    put beta  $d/f.txt "beta newest" 400 640
    put gamma $d/g.txt "gamma only" 200 644
    put delta $d/f.txt "delta old" 200 644
    put $dead $d/from-dead.txt "only on the dead host" 50 644
    snapshot pre $d
    $down
    run_synk alpha -v "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d"
    expect_rc 1
    stderr_has "$dead" || { fail "stderr does not name the dead host $dead"; show_output; }
    # the live hosts converge on the union of what the live hosts had
    local h live=(); for h in "${HOSTS[@]}"; do [[ $h == "$dead" ]] || live+=("$h"); done
    cp "$WORK/pre.$dead" "$WORK/pre.$dead.saved"; echo '<absent>' >"$WORK/pre.$dead"
    expect_converged pre $d "${live[@]}"
    cp "$WORK/pre.$dead.saved" "$WORK/pre.$dead"
    $up
    run_synk alpha -v "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d"
    expect_rc 0
    expect_converged pre $d
}
stop_delta() { docker stop -t 2 "$(c delta)" >/dev/null; }
start_delta() { docker start "$(c delta)" >/dev/null; wait_ssh delta; }
cut_gamma() { docker network disconnect "$NET" "$(c gamma)"; }
join_gamma() { docker network connect --alias gamma "$NET" "$(c gamma)"; wait_ssh gamma; }
s_fault_stopped()      { fault_common delta stop_delta start_delta e2e/fault-stop; }
s_fault_disconnected() { fault_common gamma cut_gamma join_gamma e2e/fault-net; }

# kill_common TARGET HOW: a large copy alpha -> TARGET is killed once TARGET holds >16 MiB of the new
# data; TARGET must then have the old file or the new one, nothing in between
kill_common() {
    local target=$1 how=$2 d=/data/e2e/kill f=/data/e2e/kill/huge.bin
    put_random "$target" $f 8 100
    put_random alpha $f 400 900
    snapshot pre $f
    local old new
    old=$(cut -f4,5 "$WORK/pre.$target"); new=$(cut -f4,5 "$WORK/pre.alpha")
    # throttle alpha's outgoing traffic so the copy takes a while (~400 MiB at 400 Mbit/s: ~9 s)
    hroot alpha 'tc qdisc add dev eth0 root tbf rate 400mbit burst 512kb latency 100ms' \
        || fail "tc on alpha failed (copy will be fast; the kill may come too late)"
    hroot "$target" 'touch /tmp/kill-marker'
    LAST_CMD="alpha\$ synk -v -h $target $f"
    docker exec -u synk "$(c alpha)" timeout -k 10 "$SYNK_TIMEOUT" synk -v -h "$target" "$f" \
        >"$WORK/out" 2>"$WORK/err" &
    local pid=$!
    # watch on the target for a partly written new file (a temp file or the file itself), anywhere likely
    local seen
    seen=$(hroot "$target" 'for i in $(seq 600); do
            x=$(find /data /tmp /var/tmp /home /srv -xdev -type f -newer /tmp/kill-marker -size +16M 2>/dev/null | head -n1)
            [ -n "$x" ] && { echo "$x"; exit 0; }; sleep 0.05; done; exit 1')
    if [[ -z $seen ]]; then
        fail "host $target: no partly written file appeared within 30 s; kill not attempted"
    else
        printf '       (killing %s by %s while %s is being written)\n' "$target" "$how" "$seen"
        case $how in
            container) docker kill "$(c "$target")" >/dev/null ;;
            sshd) hroot "$target" 'pkill -KILL -f "^sshd: synk"' ;;
        esac
    fi
    wait $pid; RC=$?
    hroot alpha 'tc qdisc del dev eth0 root' >/dev/null 2>&1
    [[ $how == container ]] && { docker start "$(c "$target")" >/dev/null; wait_ssh "$target"; }
    sleep 1
    if [[ -n $seen ]]; then
        [[ $RC == 1 ]] || { fail "synk exit status after the target was killed: expected 1, actual $RC"; show_output; }
        stderr_has "$target" || { fail "stderr does not name the killed host $target"; show_output; }
    fi
    local now; now=$(manifest "$target" $f | cut -f4,5)
    if [[ $now != "$old" && $now != "$new" ]]; then
        fail "host $target: $f is neither the old nor the new file after the kill" \
             "old:    $old" "new:    $new" "actual: $now"
    fi
    local junk
    junk=$(hroot "$target" 'find /data/e2e/kill -type f ! -name huge.bin -printf "%p (%s bytes)\n"')
    [[ -z $junk ]] || printf '       note: leftover file(s) on %s: %s\n' "$target" "$junk"
    hroot "$target" 'pgrep -a -f "synk --serve|rsync --server"' >"$WORK/procs" 2>/dev/null \
        && printf '       note: processes still running on %s: %s\n' "$target" "$(tr '\n' ';' <"$WORK/procs")"
    # and a rerun converges
    run_synk alpha --json -h "$target" $f
    expect_rc 0
    local h; for h in alpha "$target"; do compare_tree "$h" $f "$WORK/pre.alpha"; done
    # a copy cut by its sshd leaves its partial data (rsync's receiver and the streaming copier's
    # serve both see the channel close), so the rerun resumes: with rsync, whatever its version
    # (Debian 12's cannot read a basis by an absolute path), and with the streaming copier
    if [[ $how == sshd && -n $seen ]]; then
        local size sent
        size=$(hroot alpha "stat -c %s $f")
        sent=$(jq '.roots[0].literal_bytes' "$WORK/out")
        printf '       (the rerun sent %s of %s bytes)\n' "$sent" "$size"
        [[ $sent =~ ^[0-9]+$ ]] && (( sent < size - (8 << 20) )) \
            || { fail "host $target: the rerun sent $sent of $size bytes: it did not resume"; show_output; }
    fi
}
s_kill_rsync_container() { kill_common beta container; }
# the sshd cut of an rsync copy (its receiver keeps partial data on beta): the rerun resumes and converges
s_kill_rsync_sshd()      { kill_common beta sshd; }
s_kill_stream_sshd()     { kill_common delta sshd; }
s_kill_stream_container() { kill_common delta container; }

# after a crashed copy, the target's partial temp file (synk's own, or rsync's .NAME.XXXXXX) must not be
# taken for a real entry: a later sync of the directory must not copy it to the other hosts. (A leftover
# on the crashed host itself is reported as a note.)
spread_common() {
    local target=$1 h names
    kill_common "$target" container
    ((SCEN_FAILS)) && return
    run_synk alpha -v -h beta -h delta /data/e2e/kill
    for h in alpha beta delta; do
        names=$(hroot "$h" 'cd /data/e2e/kill 2>/dev/null && ls -A | tr "\n" " "')
        [[ $names == "huge.bin " ]] && continue
        if [[ $h == "$target" ]]; then
            printf '       note: %s still holds [%s] after the directory sync\n' "$h" "$names"
        else
            fail "host $h: /data/e2e/kill holds [$names] after a directory sync; expected only huge.bin (a partial copy spread from $target)"
            show_output
        fi
    done
}
s_kill_no_partial_spread()       { spread_common delta; }
s_kill_no_partial_spread_rsync() { spread_common beta; }


# ---------------------------------------------------------------- nothing lost (sync state, versions)

# a tree synced on every host; $1: its home-relative path
synced_tree() {
    put alpha "$1/a.txt" "a one" 100
    put alpha "$1/b.txt" "b one" 100
    put alpha "$1/sub/c.txt" "c one" 100
    run_synk alpha "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$1"
    expect_rc 0
}
# has HOST REL: the file exists on HOST
has() { hx "$1" '[ -e "$1" ]' "$(hpath "$1" "$2")"; }

s_delete_propagates() {   # deleted on gamma (not the client): gone everywhere, kept as a version everywhere
    local d=e2e/del
    synced_tree $d
    fx gamma "rm ~/$d/a.txt"
    run_synk alpha -v "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d"
    expect_rc 0
    local h
    for h in "${HOSTS[@]}"; do
        has "$h" $d/a.txt && fail "host $h: a.txt still there after its deletion on gamma"
        has "$h" $d/b.txt || fail "host $h: b.txt lost"
    done
    run_synk alpha "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d"
    has beta $d/a.txt && fail "a.txt came back on the second run"
    run_synk alpha "${PEERS_FROM_ALPHA[@]}" --versions "${HOME_OF[alpha]}/$d/a.txt"
    expect_rc 0
    for h in localhost beta delta; do
        stdout_has "^$h	.*	deleted	" || { fail "--versions lists no deleted a.txt on $h"; show_output; }
    done
    # and back
    run_synk alpha --restore "${HOME_OF[alpha]}/$d/a.txt" "${PEERS_FROM_ALPHA[@]}"
    expect_rc 0
    for h in "${HOSTS[@]}"; do
        [[ $(hx "$h" "cat ~/$d/a.txt") == "a one" ]] || fail "host $h: a.txt not restored"
    done
}

s_conflict_history() {   # edited on beta and delta since the last sync: both versions everywhere, rerun quiet
    local d=e2e/hist
    synced_tree $d
    put beta  $d/b.txt "beta's edit" 400
    put delta $d/b.txt "delta's edit" 500
    run_synk alpha "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d"
    expect_rc 3
    stderr_has "conflict: .*b\.txt: changed on delta and beta" || { fail "no conflict naming delta and beta"; show_output; }
    local h
    for h in "${HOSTS[@]}"; do
        [[ $(hx "$h" "cat ~/$d/b.txt") == "delta's edit" ]] || fail "host $h: b.txt is not the newest edit"
        [[ $(hx "$h" "cat ~/$d/b.synk-conflict-*-beta.txt") == "beta's edit" ]] || fail "host $h: beta's edit not kept"
    done
    run_synk alpha "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d"
    expect_rc 0
    [[ -s $WORK/err ]] && { fail "the run after the conflict is not quiet"; show_output; }
}

s_old_mtime_change() {   # a change made with an old mtime (tar x, cp -p) on delta wins
    local d=e2e/oldm
    synced_tree $d
    put delta $d/a.txt "from an old backup" -50000
    run_synk beta "-h" alpha -h gamma -h delta "${HOME_OF[beta]}/$d"
    expect_rc 0
    local h
    for h in "${HOSTS[@]}"; do
        [[ $(hx "$h" "cat ~/$d/a.txt") == "from an old backup" ]] || fail "host $h: the old-mtime change lost"
    done
}

s_emptied_root() {   # gamma's tree is suddenly empty (unmounted disk): gamma named, nothing deleted
    local d=e2e/empty
    synced_tree $d
    fx gamma "rm -rf ~/$d/* "
    run_synk alpha "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d"
    expect_rc 1
    stderr_has '^synk: gamma: .*empty.*--confirm-empty' || { fail "no error naming gamma and --confirm-empty"; show_output; }
    local h
    for h in alpha beta delta; do
        has "$h" $d/sub/c.txt || fail "host $h: lost sub/c.txt to gamma's empty tree"
    done
}

s_missed_sync() {   # delta is down while gamma deletes; when it is back, it deletes too
    local d=e2e/missed
    synced_tree $d
    docker stop "$(c delta)" >/dev/null
    fx gamma "rm ~/$d/a.txt"
    run_synk alpha -h beta -h gamma "${HOME_OF[alpha]}/$d"
    expect_rc 0
    docker start "$(c delta)" >/dev/null; wait_ssh delta
    run_synk beta -h alpha -h gamma -h delta "${HOME_OF[beta]}/$d"
    expect_rc 0
    has delta $d/a.txt && fail "delta kept a.txt deleted while it was away"
    local h
    for h in "${HOSTS[@]}"; do has "$h" $d/a.txt && fail "host $h: a.txt came back"; done
}

s_two_clients() {   # alpha and beta each drive the same peers; one history
    local d=e2e/clients
    synced_tree $d
    fx delta "rm ~/$d/b.txt"
    run_synk beta -h gamma -h delta "${HOME_OF[beta]}/$d"
    expect_rc 0
    run_synk alpha "${PEERS_FROM_ALPHA[@]}" "${HOME_OF[alpha]}/$d"
    expect_rc 0
    local h
    for h in "${HOSTS[@]}"; do has "$h" $d/b.txt && fail "host $h: b.txt resurrected by the other client"; done
}

s_concurrent_clients() {   # alpha and beta sync the same tree at once: one waits its turn, both succeed, one history
    local d=e2e/race
    put alpha $d/a.txt "from alpha" 100
    put beta  $d/b.txt "from beta" 200
    put delta $d/sub/d.txt "from delta" 300
    put_random gamma $d/big.bin 8 400   # at 1 MiB/s, each run's copies keep it busy for seconds
    snapshot race $d
    local h o
    local -A pid rc
    for h in alpha beta; do
        local others=()
        for o in alpha beta gamma delta; do [[ $o == "$h" ]] || others+=(-h "$o"); done
        docker exec -u synk -w "${HOME_OF[$h]}" "$(c "$h")" timeout -k 10 "$SYNK_TIMEOUT" \
            synk --bwlimit 1M "${others[@]}" "${HOME_OF[$h]}/$d" >"$WORK/out.$h" 2>"$WORK/err.$h" &
        pid[$h]=$!
    done
    for h in alpha beta; do
        rc[$h]=0
        wait "${pid[$h]}" || rc[$h]=$?
        if [[ ${rc[$h]} != 0 ]]; then
            fail "the run from $h: exit ${rc[$h]} (two clients must take turns, not fail or hang)"
            sed -e "s/^/       stderr: /" "$WORK/err.$h" | head -n 20
        fi
    done
    grep -qh '^synk: waiting for another synk run on .* at .*…$' "$WORK/err.alpha" "$WORK/err.beta" \
        || fail "neither run said it was waiting for the other" "$(cat "$WORK/err.alpha" "$WORK/err.beta" | head -n 10)"
    expect_converged race $d
    run_synk gamma -v -h alpha -h beta -h delta "${HOME_OF[gamma]}/$d"
    expect_rc 0
    stdout_has 'master:' && { fail "a third run after both still found something to copy"; show_output; }
    for h in "${HOSTS[@]}"; do
        [[ -z $(hx "$h" "ls ~/.local/state/synk/roots | grep corrupt") ]] || fail "host $h: a state file went bad"
    done
}

s_kill_client_rerun() {   # the client is killed mid-copy; the rerun converges, no false conflict, no temps
    local d=/data/e2e/killc
    fx alpha "mkdir -p $d && echo keep >$d/k.txt && head -c 300M /dev/urandom >$d/big.bin"
    run_synk alpha -h beta -h gamma $d/k.txt
    docker exec -u synk -d "$(c alpha)" bash -c "synk --copier stream -h beta -h gamma $d >/dev/null 2>&1"
    local i
    for i in $(seq 100); do
        hx beta "ls -a $d 2>/dev/null | grep -q '^\.synk-'" && break
        sleep 0.1
    done
    hroot alpha 'pkill -KILL -x synk' || true
    run_synk alpha -h beta -h gamma $d
    expect_rc 0
    stderr_has conflict && { fail "a false conflict after the killed run"; show_output; }
    local h
    for h in alpha beta gamma; do
        [[ $(hx "$h" "sha512sum <$d/big.bin") == $(hx alpha "sha512sum <$d/big.bin") ]] || fail "host $h: big.bin differs"
        [[ -z $(hx "$h" "ls -a $d | grep '^\.synk-'") ]] || fail "host $h: temp files left in $d"
    done
}

# ---------------------------------------------------------------- periodic and watch mode

# bg_synk HOST ARGS…: synk running detached as synk on HOST (stopped by stop_bg HOST)
bg_synk() { local h=$1; shift; docker exec -u synk -d -w "${HOME_OF[$h]}" "$(c "$h")" synk "$@" >/dev/null; }
stop_bg() { hroot "$1" 'pkill -TERM -x synk; for i in $(seq 50); do pgrep -x synk >/dev/null || exit 0; sleep 0.2; done; pkill -KILL -x synk'; }
# wait_file HOST REL CONTENT SECS: REL on HOST holds CONTENT within SECS
wait_file() {
    local i
    for i in $(seq $(( $4 * 5 ))); do
        [[ $(hx "$1" "cat ~/$2 2>/dev/null") == "$3" ]] && return 0
        sleep 0.2
    done
    return 1
}

s_watch_across_hosts() {   # synk --watch on alpha: a change on gamma reaches beta and alpha, no new command
    local d=e2e/watch
    put alpha $d/a.txt "from alpha" 100
    bg_synk alpha --watch --every 1h -h beta -h gamma "${HOME_OF[alpha]}/$d"
    wait_file beta $d/a.txt "from alpha" 30 || fail "the first run did not reach beta"
    sleep 2
    put gamma $d/g.txt "from gamma" 200
    wait_file beta $d/g.txt "from gamma" 20 || fail "gamma's change did not reach beta"
    wait_file alpha $d/g.txt "from gamma" 5 || fail "gamma's change did not reach alpha"
    stop_bg alpha
}

s_every_across_hosts() {   # synk --every 2s on beta; delta drops out for a while and catches up
    local d=e2e/every
    put beta $d/b.txt "one" 100
    bg_synk beta --every 2s -h alpha -h delta "${HOME_OF[beta]}/$d"
    wait_file delta $d/b.txt "one" 30 || fail "the first run did not reach delta"
    docker network disconnect "$NET" "$(c delta)"
    put alpha $d/b.txt "two" 300
    wait_file beta $d/b.txt "two" 20 || fail "alpha's change did not reach beta while delta was away"
    docker network connect --alias delta "$NET" "$(c delta)"
    wait_file delta $d/b.txt "two" 60 || fail "delta did not catch up after it came back"
    stop_bg beta
}

# ---------------------------------------------------------------- reaching peers (ssh config, install)

# ssh_conf HOST NAME TEXT: an ssh_config file ~/e2e/NAME on HOST
ssh_conf() { printf '%s\n' "$3" | docker exec -i -u synk "$(c "$1")" bash -c 'cat >"$HOME/e2e/$1"' bash "$2" \
    || fail "fixture: ssh config $2 on $1"; }

s_ssh_no_known_hosts() {   # the user's own "StrictHostKeyChecking no" + no known_hosts is obeyed
    local f=e2e/lax.txt
    put beta $f "from beta, no known hosts" 100
    ssh_conf beta lax $'Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  GlobalKnownHostsFile /dev/null\n  LogLevel ERROR'
    # without the user's policy, no key is known: ssh itself refuses
    hx beta 'ssh -F ~/e2e/lax -o StrictHostKeyChecking=yes -o BatchMode=yes alpha true' </dev/null >/dev/null 2>&1 \
        && fail "fixture: alpha's host key is known despite the empty known_hosts"
    snapshot pre $f
    run_synk beta -F "${HOME_OF[beta]}/e2e/lax" -h alpha -h gamma "${HOME_OF[beta]}/$f"
    expect_rc 0
    expect_converged pre $f alpha beta gamma
}

s_ssh_unknown_key_strict() {   # strict policy, unknown key on one peer: named, with advice; others sync
    local f=e2e/strict.txt
    put beta $f "from beta, strict" 100
    ssh_conf beta strict $'Host gamma\n  GlobalKnownHostsFile /dev/null\n  UserKnownHostsFile /dev/null\nHost *\n  StrictHostKeyChecking yes'
    snapshot pre $f
    run_synk beta -F "${HOME_OF[beta]}/e2e/strict" -h alpha -h gamma "${HOME_OF[beta]}/$f"
    expect_rc 1
    stderr_has '^synk: gamma: ssh: .*[Hh]ost key.*accept it with `ssh gamma` once' \
        || { fail "no error naming gamma and how to accept its key"; show_output; }
    expect_converged pre $f alpha beta
    expect_unchanged pre $f gamma
}

# zeta is on a network only alpha joins, and has no synk.
zeta_cache() { hx zeta 'ls -i "$HOME/.cache/synk/bin/" 2>/dev/null | grep -v "^total"'; }

s_no_install() {   # --no-install: a peer without synk is named, told what to do, and left as it was
    local f=e2e/noinst.txt
    fx zeta 'rm -rf ~/.cache/synk ~/e2e; mkdir -p ~/e2e'
    put beta $f "from beta" 100
    ssh_conf beta jump $'Host zeta\n  ProxyJump alpha'
    run_synk beta --no-install -F "${HOME_OF[beta]}/e2e/jump" -h alpha -h zeta "${HOME_OF[beta]}/$f"
    expect_rc 1
    stderr_has 'synk not found on zeta: install it or put it in PATH \(or drop --no-install' \
        || { fail "no 'synk not found on zeta … --no-install' error"; show_output; }
    [[ -z $(zeta_cache) ]] || fail "zeta got a copy of synk despite --no-install"
    [[ $(hx alpha 'cat ~/e2e/noinst.txt') == "from beta" ]] || fail "alpha was not synced"
}

s_jump_and_install() {   # zeta only through ProxyJump alpha; synk installs itself there, then reuses it
    local f=e2e/jump.txt
    fx zeta 'rm -rf ~/.cache/synk ~/e2e; mkdir -p ~/e2e'
    hx beta 'ssh -o BatchMode=yes -o ConnectTimeout=3 zeta true' </dev/null >/dev/null 2>&1 \
        && fail "fixture: beta reaches zeta directly; the ProxyJump is not needed"
    hroot zeta 'command -v synk' >/dev/null && fail "fixture: zeta has a synk on PATH"
    put beta $f "through the jump" 100
    ssh_conf beta jump $'Host zeta\n  ProxyJump alpha'
    run_synk beta -v -F "${HOME_OF[beta]}/e2e/jump" -h alpha -h zeta "${HOME_OF[beta]}/$f"
    expect_rc 0
    stdout_has '^zeta: installed synk .* at /home/synk/.cache/synk/bin/synk-' \
        || { fail "-v did not say that synk was installed on zeta"; show_output; }
    [[ $(hx zeta 'cat ~/e2e/jump.txt') == "through the jump" ]] || fail "zeta does not hold the file"
    [[ $(hx zeta 'sha512sum <"$(ls -d ~/.cache/synk/bin/synk-*)"') == $(hroot beta 'sha512sum </usr/local/bin/synk') ]] \
        || fail "zeta's copy differs from the client's synk"
    local before; before=$(zeta_cache)
    put beta $f "second run" 200
    run_synk beta -v -F "${HOME_OF[beta]}/e2e/jump" -h alpha -h zeta "${HOME_OF[beta]}/$f"
    expect_rc 0
    stdout_has 'installed synk' && fail "synk was installed again on the second run"
    [[ $(zeta_cache) == "$before" ]] || fail "zeta's copy changed on the second run: [$before] -> [$(zeta_cache)]"
    [[ $(hx zeta 'cat ~/e2e/jump.txt') == "second run" ]] || fail "the second run did not reach zeta"
}

s_upgrade_older() {   # an older synk on PATH (epsilon): upgraded into the cache, the run goes on
    local f=e2e/upgrade.txt
    docker cp "$(dirname "$0")/old-hello.bin" "$(c epsilon):/usr/local/lib/synk-old-hello.bin" >/dev/null
    hroot epsilon 'mv /usr/local/bin/synk /usr/local/bin/synk.real &&
        printf "#!/bin/sh\ncat /usr/local/lib/synk-old-hello.bin\ncat >/dev/null\n" >/usr/local/bin/synk &&
        chmod 755 /usr/local/bin/synk /usr/local/lib/synk-old-hello.bin' || fail "fixture: older synk on epsilon"
    fx epsilon 'rm -rf ~/.cache/synk ~/e2e; mkdir -p ~/e2e'
    put alpha $f "upgraded" 100
    run_synk alpha -v -h epsilon "${HOME_OF[alpha]}/$f"
    expect_rc 0
    stdout_has '^epsilon: upgraded synk 0\.0\.1 to ' || { fail "-v did not say epsilon was upgraded"; show_output; }
    [[ $(hx epsilon 'cat ~/e2e/upgrade.txt') == "upgraded" ]] || fail "epsilon does not hold the file"
    hroot epsilon 'mv -f /usr/local/bin/synk.real /usr/local/bin/synk; rm -rf /home/synk/.cache/synk/bin'
}

# ---------------------------------------------------------------- an older C library (eta: Debian 11)

s_old_libc_install() {   # eta runs glibc 2.31 and has no synk: synk installs itself there, the hosts
                         # converge, and the copy it sent runs in a chroot that holds nothing else
    local d=e2e/oldlibc copy out want
    local -a HOSTS=(alpha beta eta)    # the manifests, union and checks below cover these
    fx eta 'rm -rf ~/.cache/synk ~/.local/state/synk ~/e2e; mkdir -p ~/e2e'
    hroot eta 'command -v synk' >/dev/null && fail "fixture: eta has a synk on PATH"
    out=$(hroot eta 'ldd --version | head -n1')
    [[ $out == *" 2.31" ]] || fail "fixture: eta does not run glibc 2.31: $out"
    put alpha $d/a.txt "from alpha, newest" 300
    put eta   $d/a.txt "from eta, older" 100
    put beta  $d/b.txt "from beta" 200 600
    put eta   $d/sub/e.txt "from eta" 250 640
    snapshot pre $d
    run_synk alpha -v -h beta -h eta "${HOME_OF[alpha]}/$d"
    expect_rc 0
    stdout_has '^eta: installed synk .* at /home/synk/.cache/synk/bin/synk-' \
        || { fail "-v did not say that synk was installed on eta"; show_output; }
    expect_converged pre $d
    copy=$(hx eta 'ls -d ~/.cache/synk/bin/synk-*')
    [[ $(hx eta 'sha512sum <"$1"' "$copy") == $(hroot alpha 'sha512sum </usr/local/bin/synk') ]] \
        || fail "eta's copy differs from the client's synk"
    # The sent copy alone in an empty directory: no libc, no loader, no /dev, no /etc.
    want=$(hroot alpha 'synk --version')
    out=$(hroot eta 'set -e; r=$(mktemp -d); trap "rm -rf \"\$r\"" EXIT; cp "$1" "$r/synk"
        [ "$(ls -A "$r")" = synk ]; chroot "$r" /synk --version' "$copy" 2>&1)
    [[ $out == "$want" ]] || fail "the sent copy does not run alone in a chroot: [$out], expected [$want]"
    # In sync now: a second run copies nothing and installs nothing.
    run_synk alpha -v -h beta -h eta "${HOME_OF[alpha]}/$d"
    expect_rc 0
    stdout_has 'installed synk|^master:' && { fail "the second run installed or copied again"; show_output; }
    expect_converged pre $d
}

# ---------------------------------------------------------------- roles

# cat_on HOST REL: the content of a home-relative file on HOST ("<absent>" if missing)
cat_on() { hx "$1" 'cat -- "$1" 2>/dev/null || echo "<absent>"' "$(hpath "$1" "$2")"; }
# expect_file REL WANT HOST…: REL holds WANT (or "<absent>") on every listed host
expect_file() {
    local rel=$1 want=$2 h got; shift 2
    for h in "$@"; do
        got=$(cat_on "$h" "$rel")
        [[ $got == "$want" ]] || fail "host $h: $rel is [$got], expected [$want]"
    done
}
# expect_quiet: the last run exited 0 and said nothing
expect_quiet() {
    expect_rc 0
    [[ -s $WORK/out || -s $WORK/err ]] && { fail "the rerun is not quiet"; show_output; }
}

s_roles_backup() {   # synk.conf roles over several runs: beta a send-only source, alpha and gamma normal,
                     # delta (no rsync: streamed) a receive-only no-delete backup
    local d=e2e/roles
    local root="${HOME_OF[alpha]}/$d" conf="${HOME_OF[alpha]}/e2e/roles.conf"
    printf '%s\n' 'peer beta send-only' 'peer gamma' 'peer delta receive-only no-delete   # the backup' \
        | docker exec -i -u synk "$(c alpha)" bash -c 'cat >"$1"' bash "$conf" \
        || fail "fixture: writing $conf on alpha failed"
    # Run 1: the source fills everyone; gamma's notes reach all but the source.
    put beta $d/a.txt "a one" 100
    put beta $d/b.txt "b one" 100
    put beta $d/sub/c.txt "c one" 100
    put gamma $d/notes.txt "notes one" 100
    run_synk alpha -f "$conf" "$root"
    expect_rc 0
    expect_file $d/a.txt "a one" alpha beta gamma delta
    expect_file $d/sub/c.txt "c one" alpha beta gamma delta
    expect_file $d/notes.txt "notes one" alpha gamma delta
    expect_file $d/notes.txt "<absent>" beta
    run_synk alpha -f "$conf" "$root"
    expect_quiet
    # Run 2: an edit and a deletion on the source, an edit on gamma, a hand edit on the backup.
    put beta $d/a.txt "a two, from the source" 200
    fx beta "rm ~/$d/b.txt"
    put gamma $d/sub/c.txt "c two, from gamma" 200
    put delta $d/notes.txt "edited by hand on the backup" 300
    run_synk alpha -f "$conf" "$root"
    expect_rc 0
    stdout_has "^reverted on delta: $root/notes.txt\$" || { fail "no 'reverted on delta' line"; show_output; }
    expect_file $d/a.txt "a two, from the source" alpha beta gamma delta
    expect_file $d/b.txt "<absent>" alpha beta gamma
    expect_file $d/b.txt "b one" delta
    expect_file $d/sub/c.txt "c two, from gamma" alpha gamma delta
    expect_file $d/sub/c.txt "c one" beta
    expect_file $d/notes.txt "notes one" alpha gamma delta
    run_synk alpha --versions "$root/notes.txt" -f "$conf"
    expect_rc 0
    stdout_has "^delta	.*	overwritten	" || { fail "the backup's hand edit is not kept there"; show_output; }
    run_synk alpha -f "$conf" "$root"
    expect_quiet
    # Run 3: the source and gamma edit a.txt at once (the source wins, no conflict copy);
    # alpha deletes the notes (the backup keeps them).
    put beta $d/a.txt "a three, from the source" 300
    put gamma $d/a.txt "a three, from gamma" 400
    fx alpha "rm ~/$d/notes.txt"
    run_synk alpha -f "$conf" "$root"
    expect_rc 0
    # Each peer's path as that peer has it: gamma's home is elsewhere.
    stdout_has "^kept ${HOME_OF[gamma]}/$d/a.txt on gamma: send-only beta wins\$" || { fail "no 'send-only beta wins' line"; show_output; }
    stderr_has conflict && { fail "a conflict where the send-only source wins"; show_output; }
    expect_file $d/a.txt "a three, from the source" alpha beta gamma delta
    expect_file $d/notes.txt "<absent>" alpha beta gamma
    expect_file $d/notes.txt "notes one" delta
    local h
    for h in "${HOSTS[@]}"; do
        hx "$h" 'ls ~/e2e/roles | grep -q synk-conflict' && fail "host $h: a conflict copy"
    done
    run_synk alpha -f "$conf" "$root"
    expect_quiet
    # Run 4: -v names each role and says the source keeps its own c.txt; nothing to do.
    run_synk alpha -v -f "$conf" "$root"
    expect_rc 0
    stdout_has '^master: ' && { fail "the -v rerun copied something"; show_output; }
    stdout_has "^peer: delta \(receive-only, no-delete\) $root/sub/c.txt " || { fail "-v shows no backup role"; show_output; }
    stdout_has "^$root/sub/c.txt: send-only beta keeps its own version\$" || { fail "-v does not say beta keeps c.txt"; show_output; }
}

# many16: 16 peers, on hosts of their own (docker/many.yml)
source "$(dirname "${BASH_SOURCE[0]}")/many.sh"

SCENARIOS=(local_master remote_master missing_some dir_union norsync_master norsync_target norsync_client
           hostile_names big_file relay_units rerun_noop conflict dry_run fault_stopped fault_disconnected
           kill_rsync_container kill_rsync_sshd kill_stream_sshd kill_stream_container
           kill_no_partial_spread kill_no_partial_spread_rsync
           delete_propagates conflict_history old_mtime_change emptied_root missed_sync two_clients
           concurrent_clients kill_client_rerun watch_across_hosts every_across_hosts
           ssh_no_known_hosts ssh_unknown_key_strict no_install jump_and_install upgrade_older
           old_libc_install roles_backup many16)

# ---------------------------------------------------------------- main

for h in "${HOSTS[@]}" epsilon zeta eta; do
    HOME_OF[$h]=$(docker exec -u synk "$(c "$h")" sh -c 'echo $HOME' 2>/dev/null) \
        || { echo "rig host $h is not running: docker/rig up first" >&2; exit 2; }
done
docker exec "$(c alpha)" synk --version >/dev/null 2>&1 || echo "warning: synk --version failed on alpha" >&2

selected=("$@"); ((${#selected[@]})) || selected=("${SCENARIOS[@]}")
for s in "${selected[@]}"; do
    declare -F "s_$s" >/dev/null || { echo "unknown scenario: $s (known: ${SCENARIOS[*]})" >&2; exit 2; }
done

for s in "${selected[@]}"; do
    SCEN=$s SCEN_FAILS=0
    heal; clean
    t=$SECONDS
    printf -- '-- %s\n' "$s"
    "s_$s"
    if ((SCEN_FAILS == 0)); then
        PASSED=$((PASSED + 1)); printf 'ok   %s (%ss)\n' "$s" $((SECONDS - t))
    else
        FAILED=$((FAILED + 1)); FAILED_NAMES+=("$s"); printf 'FAIL %s (%ss)\n' "$s" $((SECONDS - t))
    fi
done
heal

((FAILED)) && printf 'failed: %s\n' "${FAILED_NAMES[*]}"
printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
((FAILED == 0))
