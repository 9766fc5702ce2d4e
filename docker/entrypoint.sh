#!/bin/bash
# synk rig host start-up: shared user key pair + host CA (made once, in the `keys` volume shared by all rig
# hosts), this host's own host key signed by that CA for its names, then sshd in the foreground.
set -euo pipefail
KEYS=/rigkeys
USER_NAME=synk
NAMES=${SYNK_RIG_NAMES:-$(hostname)}

mkdir -p "$KEYS"
exec 9>"$KEYS/.lock"
flock 9
if [[ ! -s $KEYS/ca.pub || ! -s $KEYS/id_ed25519.pub ]]; then
    rm -f "$KEYS"/ca "$KEYS"/ca.pub "$KEYS"/id_ed25519 "$KEYS"/id_ed25519.pub
    ssh-keygen -q -t ed25519 -N '' -C synk-rig-host-ca -f "$KEYS/ca"
    ssh-keygen -q -t ed25519 -N '' -C synk@synk-rig -f "$KEYS/id_ed25519"
fi
[[ -s /etc/ssh/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
ssh-keygen -q -s "$KEYS/ca" -I "$(hostname)" -h -n "${NAMES// /,},localhost" /etc/ssh/ssh_host_ed25519_key.pub
flock -u 9

# every rig host trusts host keys signed by the rig CA, under any name
printf '@cert-authority * %s\n' "$(cat "$KEYS/ca.pub")" >/etc/ssh/ssh_known_hosts

home=$(getent passwd "$USER_NAME" | cut -d: -f6)
install -d -o "$USER_NAME" -g "$USER_NAME" -m 0700 "$home/.ssh"
install -o "$USER_NAME" -g "$USER_NAME" -m 0600 "$KEYS/id_ed25519" "$home/.ssh/id_ed25519"
install -o "$USER_NAME" -g "$USER_NAME" -m 0644 "$KEYS/id_ed25519.pub" "$home/.ssh/id_ed25519.pub"
install -o "$USER_NAME" -g "$USER_NAME" -m 0600 "$KEYS/id_ed25519.pub" "$home/.ssh/authorized_keys"

mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e "$@"
