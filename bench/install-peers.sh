#!/usr/bin/env bash
# Installs the benchmark's OS-packaged peers that are missing (vsftpd; and
# redis-server, which multi-worker ftp-cluster runs embedded; PostgreSQL's
# initdb/postgres for the private database of scenario 16), so that
# `make bench` on a fresh Debian machine measures every server. Best effort:
# when a package cannot be installed (no apt-get, not root and no sudo, no
# network) it says why and the benchmark reports that server as skipped.
set -uo pipefail

missing=()
command -v vsftpd >/dev/null || [ -x /usr/sbin/vsftpd ] || missing+=(vsftpd)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v initdb >/dev/null || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
    || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
    echo "bench: ${missing[*]} missing and no apt-get here; those peers will be skipped" >&2
    exit 0
fi
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null || ! sudo -n true 2>/dev/null; then
        echo "bench: ${missing[*]} missing and no root to install them; those peers will be skipped" >&2
        exit 0
    fi
    sudo_cmd="sudo -n"
fi

# The Debian package would start a system vsftpd on port 21; the benchmark
# runs its own from a generated config, so stop one that this install started.
was_running=0
pgrep -x vsftpd >/dev/null && was_running=1

echo "bench: installing ${missing[*]} from the OS packages"
install() {
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
}
if ! install; then
    $sudo_cmd apt-get update -qq >/dev/null 2>&1
    install || echo "bench: could not install ${missing[*]}; those peers will be skipped" >&2
fi

if [ "$was_running" -eq 0 ] && pgrep -x vsftpd >/dev/null; then
    $sudo_cmd invoke-rc.d vsftpd stop >/dev/null 2>&1 || $sudo_cmd pkill -x vsftpd
fi
exit 0
