#!/bin/sh
# prepare of virtio-fs: what the host puts in the two shares before the
# guest boots (share-src read-write, share-ro read-only), and what the
# guest must find (guest/virtio-fs.sh).
set -eu
src=$CXLVMM_OUT/share-src ro=$CXLVMM_OUT/share-ro
mkdir -p "$src/dir"
echo "hello from the host" >"$src/hello.txt"
head -c 8M /dev/urandom >"$src/big.bin"
touch "$src/dir/a" "$src/dir/b" "$src/dir/c"
echo "read only" >"$ro/keep.txt"
echo "HELLO_SHA=$(sha256sum "$src/hello.txt" | cut -d' ' -f1)"
echo "BIG_SHA=$(sha256sum "$src/big.bin" | cut -d' ' -f1)"
echo "PATTERN=cxlvmm $CXLVMM_ID e2e"
