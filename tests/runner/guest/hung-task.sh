# Makes the guest kernel report a hung task, with nothing but the stock
# Debian kernel (FUSE is built in; no test module is needed): a FUSE mount
# whose daemon never answers. A lookup in it waits (killable) for the
# daemon while holding the directory's lock shared; a mkdir then waits for
# that lock uninterruptibly, and the hung-task detector, set to 1 second,
# reports it ("INFO: task mkdir:N blocked for more than 1 seconds.").
echo 1 >/proc/sys/kernel/hung_task_timeout_secs || exit 10
mkdir -p /tmp/nofuse
exec 3<>/dev/fuse || exit 11
mount -t fuse -o fd=3,rootmode=40000,user_id=0,group_id=0 nofuse /tmp/nofuse || exit 12
ls /tmp/nofuse/x >/dev/null 2>&1 &
sleep 1
mkdir /tmp/nofuse/y 2>/dev/null &
i=0
while [ $i -lt 60 ]; do
    if dmesg | grep -q 'blocked for more than'; then
        echo "hung task reported after ${i}s"
        exit 0
    fi
    sleep 1
    i=$((i + 1))
done
echo "no hung task report after 60s"
exit 13
