# Runs inside the guest under `cxlvmm run --root-share`: the script itself
# runs on the host's root (over virtio-fs, under a tmpfs overlay). The
# harness sets HOST_DEBIAN (the host's /etc/debian_version), REPO (the
# checkout, visible through the host's root) and MARK (a file name the
# guest writes under /etc, which the host must not see). Exits 7 only if
# every check passed.
fail=0
check() { if [ "$2" = 0 ]; then echo "ROOT-CHECK $1: ok ($3)"; else echo "ROOT-CHECK $1: FAILED ($3)"; fail=1; fi; }

# / is the overlay whose lower layer is the virtio-fs mount (outside the
# chroot, so /proc/mounts does not list it; the overlay names it).
root=$(awk '$2 == "/" {print $1, $3, $4}' /proc/mounts | tail -1)
case "$root" in "overlay overlay "*lowerdir=/rootshare/lower*) r=0 ;; *) r=1 ;; esac
check root-is-overlay $r "/ is: ${root%%,*}..."
v=$(cat /etc/debian_version)
[ "$v" = "$HOST_DEBIAN" ]; check host-etc $? "/etc/debian_version $v"
# A host program the guest image does not have.
out=$(python3 -c 'import sys; print("python", sys.version_info[0])' 2>&1)
[ "$out" = "python 3" ]; check host-python $? "$out"
# A binary built on the host, from the checkout, run in the guest.
out=$("$REPO/target/release/cxlvmm" --version 2>&1)
case "$out" in cxlvmm*) r=0 ;; *) r=1 ;; esac; check host-built-binary $r "$out"
# The guest kernel's modules are there, not the host's.
[ -d "/lib/modules/$(uname -r)/kernel" ]; check guest-modules $? "/lib/modules/$(uname -r)"
# Writes land in the overlay.
echo "written in the guest" >"/etc/$MARK"; check write-etc $? "/etc/$MARK"
[ "$(cat "/etc/$MARK")" = "written in the guest" ]; check read-back $? "$(cat "/etc/$MARK")"
[ "$fail" = 0 ] && exit 7
exit 1
