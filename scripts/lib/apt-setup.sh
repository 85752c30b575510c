#!/usr/bin/env bash
# Idempotent apt setup shared by every script that needs Debian packages.
#
#   source scripts/lib/apt-setup.sh
#   apt_sources          # add bookworm-backports + trixie (pinned low), apt-get update once
#   apt_install PKG...   # install host packages that are missing
#
# trixie is pinned to priority 1 so that nothing on the host is ever upgraded
# from it; we only `apt-get download` guest user space from it.
set -euo pipefail

APT_STAMP=/var/lib/apt/cxlvmm-sources.stamp

_as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# apt-get as root, one of this project's calls at a time (scripts/test
# builds the instruction-counted rig's QEMU, which installs its build
# dependencies, beside the end-to-end rig, which may install QEMU): each
# waits up to 15 min for the one before, and an install up to 5 min for
# dpkg's own lock (another program's apt-get), rather than failing at once.
APT_LOCK=/var/lib/apt/cxlvmm.lock
_apt_get() {
    _as_root env DEBIAN_FRONTEND=noninteractive flock -w 900 "$APT_LOCK" \
        apt-get -o DPkg::Lock::Timeout=300 "$@"
}

apt_sources() {
    local changed=0
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        _as_root tee /etc/apt/sources.list.d/cxlvmm-backports.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        changed=1
    fi
    if ! grep -rqs 'trixie' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        _as_root tee /etc/apt/sources.list.d/cxlvmm-trixie.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        _as_root tee /etc/apt/preferences.d/cxlvmm-trixie >/dev/null <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 1
PIN
        changed=1
    fi
    if [ "$changed" = 1 ] || [ ! -e "$APT_STAMP" ]; then
        echo ">> apt-get update" >&2
        _apt_get update -qq >&2
        _as_root touch "$APT_STAMP"
    fi
}

# Install host packages that are not installed yet (one apt-get call).
# A PKG of the form name/suite installs from that suite.
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "${p%%/*}" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" = 0 ] && return 0
    apt_sources
    echo ">> apt-get install ${missing[*]}" >&2
    _apt_get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
