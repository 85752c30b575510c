#!/bin/sh
# Makes the inputs of tests/e2e/manifest.toml that are derived from other
# things, in build/e2e/inputs (tests/e2e/run.sh calls it first):
# - many-devices.toml: 32 type-3 devices behind two switch levels under four
#   host bridges, from scripts/topology-gen;
# - modules-tree/lib/modules/<release>: two modules of the 6.12 guest kernel
#   that its image lacks (af_key and xfrm_algo, which af_key needs), taken
#   from the kernel package guest-images/build unpacked, without modules.dep
#   (the guest's /init must run depmod);
# - modules-initrd.img: the 6.12 image's initramfs with this checkout's
#   guest-images/init appended over its /init, so that the modules case
#   checks the init of the checkout even where the image is older.
set -eu
cd "$(dirname "$0")/../.."
in=build/e2e/inputs
mkdir -p "$in"
python3 scripts/topology-gen --host-bridges 4 --root-ports 2 --switch-levels 2 --fanout 2 \
    --devices 32 --volatile 256M --out "$in/many-devices.toml" >"$in/topology-gen.log" 2>&1 ||
    { cat "$in/topology-gen.log" >&2; exit 1; }

rel=$(cat build/guest/6.12/kernel-release)
# build/guest/.. rather than build/: build/guest may be a symbolic link.
src=$(ls -d build/guest/../guest-work/pkgs/linux-image-*/lib/modules/"$rel" 2>/dev/null | head -1)
[ -n "$src" ] || { echo "$0: no unpacked kernel package for $rel (run guest-images/build)" >&2; exit 1; }
tree=$in/modules-tree/lib/modules/$rel
rm -rf "$in/modules-tree"
mkdir -p "$tree/kernel/net/key" "$tree/kernel/net/xfrm"
cp "$src/kernel/net/key/af_key.ko.xz" "$tree/kernel/net/key/"
cp "$src/kernel/net/xfrm/xfrm_algo.ko.xz" "$tree/kernel/net/xfrm/"
cp build/guest/6.12/initrd.img "$in/modules-initrd.img"
(cd guest-images && echo init | cpio --quiet -o -H newc -R 0:0) >>"$in/modules-initrd.img"
