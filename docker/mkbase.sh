#!/usr/bin/env bash
# Build a local Debian base image for the synk test rig without any container registry:
# debootstrap (minbase + what the rig needs) into a directory, tar it, `docker import` it.
#
#   docker/mkbase.sh [--force]
#
# Environment:
#   SYNK_SUITE       Debian release                 (default bookworm; the rig also makes bullseye)
#   SYNK_BASE_IMAGE  image tag to create            (default synk-base:$SYNK_SUITE)
#   SYNK_MIRROR      Debian mirror URL              (default: the one apt uses on this host)
#   SYNK_CACHE       where the rootfs tarball is kept (default ${XDG_CACHE_HOME:-$HOME/.cache}/synk-rig)
#
# Idempotent: does nothing when the image already exists (unless --force). The finished rootfs tarball is
# cached, so re-creating the image (after `docker rmi`, or on a machine that kept its cache) only re-imports.
set -euo pipefail

SUITE=${SYNK_SUITE:-bookworm}
IMAGE=${SYNK_BASE_IMAGE:-synk-base:$SUITE}
CACHE=${SYNK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/synk-rig}
# Everything the rig uses inside a host; sshd, rsync and the tools the scenarios run through `docker exec`.
PACKAGES=openssh-server,openssh-client,rsync,ca-certificates,procps,iproute2,netbase,iputils-ping,psmisc,less
FORCE=0
[[ ${1:-} == --force ]] && FORCE=1

log() { printf 'mkbase: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ $FORCE == 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already exists"
    exit 0
fi

# The Debian mirror apt uses here: deb822 *.sources files first, then one-line sources.list entries.
find_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        # the first URIs: of a stanza whose Suites include the release itself (not -security/-updates only)
        uri=$(awk -v s="$SUITE" '
            /^[[:space:]]*$/ { if (u != "" && ok) { print u; exit } u = ""; ok = 0; next }
            /^URIs:/   { u = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
            END { if (u != "" && ok) print u }' "$f" | head -n1)
        [[ -n $uri ]] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        uri=$(awk -v s="$SUITE" '$1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i+1) == s) { print $i; exit } }' "$f")
        [[ -n $uri ]] && { echo "$uri"; return; }
    done
    echo http://deb.debian.org/debian
}
MIRROR=${SYNK_MIRROR:-$(find_mirror)}

mkdir -p "$CACHE"
KEY=$(printf '%s\n' "$SUITE" "$PACKAGES" "$MIRROR" | sha256sum | cut -c1-12)
TARBALL=$CACHE/rootfs-$SUITE-$KEY.tar

if [[ $FORCE == 1 || ! -s $TARBALL ]]; then
    command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"
    [[ $(id -u) == 0 ]] || die "debootstrap needs root"
    ROOT=$(mktemp -d "${TMPDIR:-/var/tmp}/synk-rootfs.XXXXXX")
    trap 'rm -rf --one-file-system "$ROOT"' EXIT
    log "debootstrap $SUITE from $MIRROR into $ROOT (a few minutes)"
    # keep debootstrap's own .deb downloads between runs so a re-bootstrap doesn't fetch again
    # (one directory per release: each has its own versions of every package)
    DEBS=$CACHE/debs-$SUITE LOG=$CACHE/debootstrap-$SUITE.log
    mkdir -p "$DEBS" "$ROOT/var/cache/apt/archives"
    cp -a "$DEBS/." "$ROOT/var/cache/apt/archives/" 2>/dev/null || true
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >"$LOG" 2>&1 \
        || { tail -n 30 "$LOG" >&2; die "debootstrap failed (log: $LOG)"; }
    cp -a "$ROOT/var/cache/apt/archives/"*.deb "$DEBS/" 2>/dev/null || true

    # slim down and make it container-friendly
    rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/tmp/* "$ROOT"/var/tmp/*
    rm -f "$ROOT"/etc/ssh/ssh_host_*            # every container makes its own at start
    : >"$ROOT/etc/machine-id"
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$ROOT/etc/apt/sources.list"
    # a dpkg policy that makes `apt-get install` in a container not try to start services
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"; chmod 755 "$ROOT/usr/sbin/policy-rc.d"

    tar --numeric-owner --xattrs -C "$ROOT" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    rm -rf --one-file-system "$ROOT"; trap - EXIT
    log "cached rootfs in $TARBALL"
else
    log "using cached rootfs $TARBALL"
fi

docker import \
    --change 'CMD ["/bin/bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$TARBALL" "$IMAGE" >/dev/null
log "imported $IMAGE"
