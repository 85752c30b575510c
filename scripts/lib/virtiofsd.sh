#!/usr/bin/env bash
# Builds virtiofsd, the vhost-user virtio-fs daemon that `cxlvmm run
# --share` starts, from crates.io into build/tools/bin/virtiofsd unless it
# is there. Debian 12 has no virtiofsd package (trixie's needs a newer
# glibc); the crate needs libseccomp and libcap-ng to link.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=1.14.0
bin=build/tools/bin/virtiofsd
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$VERSION"; then
    exit 0
fi
# shellcheck source=apt-setup.sh
source scripts/lib/apt-setup.sh
apt_install libseccomp-dev libcap-ng-dev
echo ">> cargo install virtiofsd@$VERSION (into build/tools)" >&2
cargo install --quiet --locked --root build/tools "virtiofsd@$VERSION"
