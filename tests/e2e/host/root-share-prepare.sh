#!/bin/sh
# prepare of root-share: what guest/root-share.sh checks of the host's
# root, and a file name it writes under /etc (its tmpfs overlay), which the
# check then looks for on the host.
set -eu
mark=cxlvmm-root-share-$$
echo "$mark" >"$CXLVMM_OUT/mark"
echo "HOST_DEBIAN=$(cat /etc/debian_version)"
echo "REPO=$(cd ../.. && pwd)"
echo "MARK=$mark"
