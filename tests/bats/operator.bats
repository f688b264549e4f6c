#!/usr/bin/env bats
# The provider's executables as black boxes, driven the way an operator
# debugging by hand would: a clean environment plus a few variables.
# Needs the private GlusterFS (make gluster-up) and GLUSTER_CONFIG set.

bats_require_minimum_version 1.5.0

setup_file() {
    : "${GLUSTER_CONFIG:?run make gluster-up and export GLUSTER_CONFIG}"
    export PROVIDER="$BATS_TEST_DIRNAME/../../providers/gluster"
    export MOUNT_BASE
    MOUNT_BASE=$(sed -n 's/^GLUSTER_MOUNT_BASE=//p' "$GLUSTER_CONFIG")
}

setup() {
    DISK="bats-$$-$BATS_TEST_NUMBER-$RANDOM.ext.disk0"
}

teardown() {
    for name in "$DISK.snap" "$DISK"; do
        gl detach VOL_NAME="$name" >/dev/null 2>&1 || true
        gl remove VOL_NAME="$name" >/dev/null 2>&1 || true
    done
    if [ -n "${LID:-}" ]; then
        gl detach LOGICAL_ID="$LID" >/dev/null 2>&1 || true
        gl remove LOGICAL_ID="$LID" >/dev/null 2>&1 || true
    fi
}

# gl SCRIPT [VAR=value...] [ARG...]: run one script as Ganeti would, with
# nothing else in the environment (verify takes check names as arguments)
gl() {
    local script=$1 word
    local -a vars=() args=()
    shift
    for word in "$@"; do
        if [[ "$word" == *=* ]]; then vars+=("$word"); else args+=("$word"); fi
    done
    env -i PATH=/usr/bin:/bin GLUSTER_CONFIG="$GLUSTER_CONFIG" "${vars[@]}" "$PROVIDER/$script" "${args[@]}"
}

image() { echo "$MOUNT_BASE/gv0/ganeti/$1"; }

# refused SCRIPT VAR=value... : must fail with one error line, nothing on stdout
refused() {
    run --separate-stderr gl "$@"
    [ "$status" -ne 0 ]
    [ -z "$output" ]
    [ "${#stderr_lines[@]}" -eq 1 ]
    [[ "${stderr_lines[0]}" == "gluster $1: error: "* ]]
    [[ "$stderr" != *Traceback* ]]
}

@test "every script prints usage on --help" {
    for script in create attach detach remove grow setinfo verify open close snapshot resize rename; do
        run "$PROVIDER/$script" --help
        [ "$status" -eq 0 ]
        [[ "$output" == "usage: $script"* ]]
        [[ "$output" == *Environment:* ]]
    done
}

@test "parameters.list names every disk parameter" {
    for name in servers port volume dir preallocation pool; do
        grep -q "^$name " "$PROVIDER/parameters.list"
    done
}

@test "Ganeti dialect: a disk's whole life keeps its data" {
    gl create VOL_NAME="$DISK" VOL_SIZE=32 EXTP_PROVIDER=gluster EXTP_ACCESS=kernelspace
    run --separate-stderr gl attach VOL_NAME="$DISK"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 2 ]
    device=${lines[0]}
    [ -b "$device" ]
    [ "${lines[1]}" = "kvm:gluster://127.0.0.1:24007/gv0/ganeti/$DISK" ]

    dd if=/dev/urandom of="$BATS_TEST_TMPDIR/data" bs=1M count=4 status=none
    dd if="$BATS_TEST_TMPDIR/data" of="$device" bs=1M oflag=direct status=none
    sum=$(sha256sum < "$BATS_TEST_TMPDIR/data")

    gl detach VOL_NAME="$DISK"
    ! losetup -j "$(image "$DISK")" | grep -q .
    device=$(gl attach VOL_NAME="$DISK" | head -n 1)
    [ "$(head -c 4M "$device" | sha256sum)" = "$sum" ]

    gl grow VOL_NAME="$DISK" VOL_SIZE=32 VOL_NEW_SIZE=48
    [ "$(blockdev --getsize64 "$device")" -eq $((48 << 20)) ]

    gl setinfo VOL_NAME="$DISK" VOL_METADATA=originstname+web1.example.com
    [ "$(getfattr --only-values -n user.ganeti-gluster.metadata "$(image "$DISK")")" = "originstname+web1.example.com" ]

    gl open VOL_NAME="$DISK" VOL_OPEN_EXCLUSIVE=True
    gl snapshot VOL_NAME="$DISK" VOL_SNAPSHOT_NAME="$DISK.snap" VOL_SNAPSHOT_SIZE=48
    snap=$(gl attach VOL_NAME="$DISK.snap" | head -n 1)
    [ "$snap" != "$device" ]
    [ "$(head -c 4M "$snap" | sha256sum)" = "$sum" ]
    gl detach VOL_NAME="$DISK.snap"
    gl remove VOL_NAME="$DISK.snap"

    gl close VOL_NAME="$DISK"
    gl detach VOL_NAME="$DISK"
    gl detach VOL_NAME="$DISK"
    gl remove VOL_NAME="$DISK"
    gl remove VOL_NAME="$DISK"
}

@test "design dialect: create, attach, resize, rename, remove" {
    instance="bats-$$-$RANDOM.example.com"
    LID=$(gl create INSTANCE_NAME="$instance" DISK_INDEX=0 DISK_SIZE=16)
    [ "$LID" = "gluster://127.0.0.1:24007/gv0/ganeti/$instance-disk0" ]
    device=$(gl attach LOGICAL_ID="$LID" | head -n 1)
    [ -b "$device" ]
    [ "$(gl resize LOGICAL_ID="$LID" DISK_SIZE=24)" = "24" ]
    [ "$(blockdev --getsize64 "$device")" -eq $((24 << 20)) ]
    gl detach LOGICAL_ID="$LID"
    old=$LID
    LID=$(gl rename LOGICAL_ID="$LID" NEW_INSTANCE_NAME="new-$instance")
    [ "$LID" = "gluster://127.0.0.1:24007/gv0/ganeti/new-$instance-disk0" ]
    refused attach LOGICAL_ID="$old"
    gl attach LOGICAL_ID="$LID" >/dev/null
    gl detach LOGICAL_ID="$LID"
    gl remove LOGICAL_ID="$LID"
}

@test "bad names, sizes and logical IDs are refused and create nothing" {
    before=$(ls "$MOUNT_BASE/gv0/ganeti" 2>/dev/null || true)
    refused create VOL_SIZE=8
    refused create VOL_NAME=a/b VOL_SIZE=8
    refused create VOL_NAME=../x VOL_SIZE=8
    for size in abc 0 -5 1.5 99999999999999; do
        refused create VOL_NAME="$DISK" VOL_SIZE="$size"
    done
    refused attach LOGICAL_ID=gluster://127.0.0.1/gv0/ganeti/x
    refused attach LOGICAL_ID=nfs://127.0.0.1:24007/gv0/ganeti/x
    refused attach VOL_NAME="$DISK" LOGICAL_ID=gluster://127.0.0.1:24007/gv0/ganeti/x
    [ "$(ls "$MOUNT_BASE/gv0/ganeti" 2>/dev/null || true)" = "$before" ]
}

@test "parameters cannot inject mount options or unknown settings" {
    refused create VOL_NAME="$DISK" VOL_SIZE=8 EXTP_SERVERS='a,backup-volfile-servers=x'
    refused create VOL_NAME="$DISK" VOL_SIZE=8 EXTP_SERVERS='host;id'
    refused create VOL_NAME="$DISK" VOL_SIZE=8 EXTP_VOLUME='gv0,log-file=/etc/passwd'
    refused create VOL_NAME="$DISK" VOL_SIZE=8 EXTP_FOO=1
    refused create VOL_NAME="$DISK" VOL_SIZE=8 EXTP_MOUNT_BASE=/
    run gl attach VOL_NAME="$DISK"
    [ "$status" -ne 0 ]
}

@test "nothing is shrunk, overwritten or removed while in use" {
    gl create VOL_NAME="$DISK" VOL_SIZE=16
    refused grow VOL_NAME="$DISK" VOL_SIZE=16 VOL_NEW_SIZE=8
    [ "$(stat -c %s "$(image "$DISK")")" -eq $((16 << 20)) ]
    refused create VOL_NAME="$DISK" VOL_SIZE=32
    gl create VOL_NAME="$DISK" VOL_SIZE=16
    gl attach VOL_NAME="$DISK" >/dev/null
    refused remove VOL_NAME="$DISK"
    [ -f "$(image "$DISK")" ]
}

@test "verify runs every check, or the ones named" {
    run gl verify
    [ "$status" -eq 0 ]
    for check in config server volume odirect space health ganeti; do
        [[ "$output" == *"$check: ok"* ]]
    done
    run gl verify odirect
    [ "$status" -eq 0 ]
    [ "$output" = "odirect: ok: performance.strict-o-direct is on" ]
    refused verify bogus
}
