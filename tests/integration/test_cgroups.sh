#!/bin/sh
# Real cgroups, through the real agent and 'sockid whoami'. Workloads are
# started in cgroups this test makes (a v1 memory cgroup with libcgroup's
# cgcreate/cgexec; v2 cgroups with mkdir and cgroup.procs, since libcgroup
# 2.0.2 cannot make a v2 cgroup without a controller, DESIGN §7), named as
# Docker, the kubelet and systemd name theirs, and each workload shows
# exactly the cgroup:, container:, k8s: and systemd: selectors its cgroup
# earns:
#
#   memory:/sockid-test-PID (v1) and /sockid-test-PID (v2)   cgroup: only
#   /sockid-test-PID                                          cgroup: only
#   /system.slice/docker-<64 hex>.scope                       container:id, runtime docker
#   /kubepods.slice/.../kubepods-burstable-pod<uid>.slice/cri-containerd-<64 hex>.scope
#                                                             container:id, runtime
#                                                             containerd, k8s:pod-uid, qos
#   /system.slice/demo.service                                systemd:unit
#   /user.slice/user-12345.slice/user@12345.service/app.slice/demo.service
#                                                             systemd:user-unit
#
# and the forgeries, cgroups a user may name as they like inside their
# delegated subtree: docker-<64 hex>.scope and demo.service directly in
# user@12345.service give no container:runtime:docker, no container:id and
# no systemd:unit:, only the user's own selectors. An entry selecting on
# container:id:<the docker scope's id> gives its SPIFFE ID (in whoami, and
# a token through 'sockid fetch') to the process in that scope only: not to
# the one in the forged scope with the same id, not to one in the root
# cgroup, nor to any other workload here.
#
# Every cgroup the test made is removed on any exit (workloads killed first,
# any process left moved to the root cgroup, deepest first). Runs of this
# test share the fixed names above, so they take turns (flock). Needs root,
# a cgroup2 mount, and for the v1 case the v1 memory controller and
# cgroup-tools (cgcreate, cgexec, cgdelete); without a v1 memory hierarchy
# (a pure v2 host) that one case is skipped and the rest still runs.
#
# Usage: test_cgroups.sh AGENT SOCKID IT_PROBE
set -u
[ $# -eq 3 ] || {
    echo "usage: $0 AGENT SOCKID IT_PROBE" >&2
    exit 2
}
AGENT=$1
SOCKID=$2
IT_PROBE=$3
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
LOCK=/tmp/sockid-test-cgroups.lock
USER_UID=12345

skip() {
    echo "SKIP: $*"
    exit 77
}

[ "$(id -u)" = 0 ] || skip "needs root to make cgroups and move processes into them (running as uid $(id -u))"

# The cgroup2 mount showing the whole hierarchy, and the v1 memory one.
CG2=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") {
                 if ($(i + 1) == "cgroup2" && $4 == "/") print $5; break } }' \
    /proc/self/mountinfo | head -n 1)
[ -n "$CG2" ] && [ -w "$CG2/cgroup.procs" ] ||
    skip "no writable cgroup2 mount showing the whole hierarchy in /proc/self/mountinfo"
V1MEM=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") {
                   if ($(i + 1) == "cgroup" && $4 == "/" && ("," $(i + 3) ",") ~ /,memory,/) print $5
                   break } }' /proc/self/mountinfo | head -n 1)
# The key /proc/<pid>/cgroup gives the memory hierarchy ("memory", or a
# co-mounted set such as "memory,blkio").
V1KEY=
if [ -n "$V1MEM" ]; then
    V1KEY=$(awk -F: '("," $2 ",") ~ /,memory,/ { print $2; exit }' /proc/self/cgroup)
    [ -n "$V1KEY" ] || skip "the v1 memory hierarchy is mounted at $V1MEM but /proc/self/cgroup has no line for it"
    for tool in cgcreate cgexec cgdelete; do
        command -v "$tool" >/dev/null 2>&1 ||
            skip "$tool not found: the v1 case makes its cgroup with libcgroup's tools (Debian package cgroup-tools)"
    done
fi
command -v flock >/dev/null 2>&1 || skip "flock (util-linux) not found"
[ -x "$PY" ] || skip "$PY not found"

it_setup
ERR=$IT_TMP/stderr
SOCK=$IT_TMP/agent.sock
ADMIN=$IT_TMP/agent-admin.sock

# --- cleanup ------------------------------------------------------------------

CG_CREATED=  # v2 directories this test made, in the order made
CG_LEAVES=   # v2 cgroups the workloads are moved into (relative to $CG2)
CG_V1=       # the v1 cgroup, as cgdelete names it, once made
WL_PIDS=

# cg_children DIR: the child cgroups of DIR, one per line.
cg_children() {
    find "$1" -mindepth 1 -maxdepth 1 -type d 2>/dev/null
}

# Removes what the test made. Prints what it could not remove and returns 1.
cg_cleanup() {
    left=0
    for pid in $WL_PIDS; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    WL_PIDS=
    rev=
    for d in $CG_CREATED; do
        rev="$d $rev"
    done
    # Anything still inside (a sockid started by a workload, orphaned when
    # the workload was killed) goes to the root cgroup first.
    for d in $rev; do
        [ -f "$d/cgroup.procs" ] || continue
        for p in $(cat "$d/cgroup.procs" 2>/dev/null); do
            echo "$p" >"$CG2/cgroup.procs" 2>/dev/null
        done
    done
    # Deepest first: the reverse of the order made. A process that just
    # exited may keep its cgroup busy for a moment. A parent this test made
    # (/kubepods.slice) in which another test now has a cgroup of its own is
    # that test's to remove when it is done (test_cgpath removes the parents
    # of its cgroups, whoever made them).
    for d in $rev; do
        i=0
        while [ -d "$d" ] && ! rmdir "$d" 2>/dev/null && [ $i -lt 100 ]; do
            [ -n "$(cg_children "$d")" ] && break
            sleep_tick
            i=$((i + 1))
        done
        [ -d "$d" ] || continue
        if [ -n "$(cg_children "$d")" ]; then
            echo "cleanup: $d holds cgroups of another test ($(cg_children "$d" | tr '\n' ' ')); it removes it"
        else
            echo "cleanup: cannot remove the cgroup $d: $(rmdir "$d" 2>&1)" >&2
            left=1
        fi
    done
    CG_CREATED=
    # Where no systemd manages the hierarchy, a parent such as /user.slice
    # is only ever a test's: one another test made and could not remove
    # while this test had a child in it goes too, once empty (rmdir refuses
    # a cgroup in use). Where systemd runs, parents this test did not make
    # are systemd's and stay.
    if [ "$(cat /proc/1/comm 2>/dev/null)" != systemd ]; then
        for rel in $CG_LEAVES; do
            while [ -n "$rel" ] && [ "$rel" != / ]; do
                rmdir "$CG2$rel" 2>/dev/null
                rel=${rel%/*}
            done
        done
    fi
    if [ -n "$CG_V1" ]; then
        # cgdelete moves any task left to the parent before removing.
        cgdelete -g "$CG_V1" 2>"$IT_TMP/cgdelete.err" || {
            echo "cleanup: cgdelete -g $CG_V1 failed: $(cat "$IT_TMP/cgdelete.err")" >&2
            left=1
        }
        [ -d "$V1MEM/${CG_V1#*:/}" ] && {
            echo "cleanup: the v1 cgroup $V1MEM/${CG_V1#*:/} is still there" >&2
            left=1
        }
        CG_V1=
    fi
    return $left
}

cg_on_exit() {
    status=$?
    cg_cleanup || [ "$status" != 0 ] || status=1
    if [ "$status" = 77 ]; then
        # A skip found after setup is no failure: no agent logs.
        it_cleanup
        exit 77
    fi
    (exit "$status")
    it_on_exit
}
trap cg_on_exit EXIT

# Runs of this test use the same fixed names (demo.service, user@12345):
# one at a time. The lock goes with the last process holding fd 9.
exec 9>"$LOCK" || fail "cannot open the lock file $LOCK"
flock -w 90 9 || fail "another run of this test held $LOCK for 90 s"

# With the lock held no other run is live: an empty /sockid-test-PID is a
# killed run's (the one name here that is not fixed).
for d in "$CG2"/sockid-test-* ${V1MEM:+"$V1MEM"/sockid-test-*}; do
    [ -d "$d" ] || continue
    [ -z "$(cat "$d/cgroup.procs" 2>/dev/null)" ] || continue
    if [ "${d#"$CG2"/}" != "$d" ]; then
        rmdir "$d" 2>/dev/null && note "removed $d, left by a run that was killed"
    else
        cgdelete -g "memory:/${d##*/}" 2>/dev/null && note "removed $d, left by a run that was killed"
    fi
done

# --- making cgroups -------------------------------------------------------------

# cg2_make REL: makes the v2 cgroup REL and the parents it lacks, and
# records them for the cleanup. A leaf left by an earlier run that was killed
# before it could clean up is empty: it is used and removed with the rest.
# Another test may remove a shared parent (/user.slice) just as this one
# makes a child in it: that is retried.
cg2_make() {
    leaf=$CG2$1
    CG_LEAVES="$CG_LEAVES $1"
    if [ -d "$leaf" ]; then
        procs=$(cat "$leaf/cgroup.procs") || fail "cannot read $leaf/cgroup.procs"
        [ -z "$procs" ] || skip "the cgroup $leaf exists and holds processes ($(printf '%s' "$procs" | tr '\n' ' ')); this test needs that name"
        CG_CREATED="$CG_CREATED $leaf"
        return 0
    fi
    attempt=0
    while [ $attempt -lt 20 ]; do
        path=$CG2
        made=yes
        for seg in $(printf '%s\n' "$1" | tr / ' '); do
            path=$path/$seg
            if mkdir "$path" 2>"$ERR"; then
                CG_CREATED="$CG_CREATED $path"
            elif [ ! -d "$path" ]; then
                made=no
                break
            fi
        done
        [ $made = yes ] && return 0
        attempt=$((attempt + 1))
    done
    fail "cannot make the cgroup $leaf: $(cat "$ERR")"
}

# --- workloads ----------------------------------------------------------------

# workload_start NAME [PREFIX...]: starts a shell (under PREFIX, e.g. cgexec)
# that waits on the fifo $IT_TMP/NAME.go, then runs 'sockid whoami --json'
# and 'sockid fetch', its outputs and exit statuses in $IT_TMP/NAME.*. Sets
# WL_PID. The shell dies with this test (pdeathsig), so a test killed from
# outside leaves no process in a cgroup.
workload_start() {
    wl=$1
    shift
    mkfifo "$IT_TMP/$wl.go" || fail "mkfifo $IT_TMP/$wl.go"
    setpriv --pdeathsig KILL -- "$@" sh -c '
        read go <"$1" || exit 90
        "$2" whoami --json --timeout 20000 --socket "$3" >"$4.whoami" 2>"$4.whoami.err"
        echo $? >"$4.whoami.rc"
        "$2" fetch --audience sockid-test --timeout 20000 --socket "$3" >"$4.fetch" 2>"$4.fetch.err"
        echo $? >"$4.fetch.rc"
    ' workload "$IT_TMP/$wl.go" "$SOCKID" "$SOCK" "$IT_TMP/$wl" </dev/null &
    WL_PID=$!
    WL_PIDS="$WL_PIDS $WL_PID"
}

# workload_in PID LINE...: until /proc/PID/cgroup has every LINE (10 s).
workload_in() {
    pid=$1
    shift
    i=0
    while :; do
        missing=
        for want in "$@"; do
            grep -Fxq -- "$want" "/proc/$pid/cgroup" 2>/dev/null || missing="$missing $want"
        done
        [ -z "$missing" ] && return 0
        is_running "$pid" || fail "the workload (pid $pid) exited before it was released"
        [ $i -ge 500 ] && fail "the workload (pid $pid) is not in$missing within 10 s:
$(cat "/proc/$pid/cgroup")"
        sleep_tick
        i=$((i + 1))
    done
}

# workload_move PID REL: moves PID into the v2 cgroup REL ("" for the root).
workload_move() {
    echo "$1" >"$CG2$2/cgroup.procs" 2>"$ERR" ||
        fail "cannot move pid $1 into $CG2$2: $(cat "$ERR")"
}

# workload_finish NAME: releases the workload and waits for it (50 s).
workload_finish() {
    timeout 10 sh -c 'echo go >"$1"' release "$IT_TMP/$1.go" ||
        fail "workload $1 (pid $WL_PID) did not take its go within 10 s"
    i=0
    while is_running "$WL_PID"; do
        [ $i -ge 2500 ] && fail "workload $1 (pid $WL_PID) did not finish within 50 s"
        sleep_tick
        i=$((i + 1))
    done
    wait "$WL_PID"
    s=$?
    [ $s = 0 ] || fail "workload $1 exited with status $s"
    for step in whoami fetch; do
        [ -s "$IT_TMP/$1.$step.rc" ] || fail "workload $1 did not run sockid $step"
    done
    [ "$(cat "$IT_TMP/$1.whoami.rc")" = 0 ] ||
        fail "workload $1: sockid whoami --json exited with status $(cat "$IT_TMP/$1.whoami.rc"): $(cat "$IT_TMP/$1.whoami.err")"
}

# expected_cgroup V2REL [V1KEY V1PATH]: the cgroup: selectors of a child of
# this shell moved to V2REL, and in hierarchy V1KEY to V1PATH: every other
# line as this shell's own, which the child inherits.
expected_cgroup() {
    while IFS= read -r line; do
        rest=${line#*:}
        ctrl=${rest%%:*}
        path=${rest#*:}
        if [ -z "$ctrl" ]; then
            echo "cgroup:unified:$1"
        elif [ $# -ge 3 ] && [ "$ctrl" = "$2" ]; then
            echo "cgroup:$ctrl:$3"
        else
            echo "cgroup:$ctrl:$path"
        fi
    done <"/proc/$$/cgroup"
}

# check_selectors NAME EXPECTED...: the workload's cgroup:, container:, k8s:
# and systemd: selectors are exactly EXPECTED (one per argument, or several
# in one argument a line each), and it has, or has not (HAS_ID=yes|no), the
# docker entry's SPIFFE ID. Prints what it showed.
check_selectors() {
    wl=$1
    shift
    printf '%s\n' "$@" | sed '/^$/d' >"$IT_TMP/$wl.want"
    $PY -c '
import json, sys
path, want_path, has_id, spiffe_id, name = sys.argv[1:6]
with open(path) as f:
    try:
        d = json.load(f)
    except ValueError as e:
        sys.exit("%s: sockid whoami --json printed no JSON: %s" % (name, e))
with open(want_path) as f:
    want = sorted(l.rstrip("\n") for l in f if l.strip())
sels = d.get("selectors")
ids = d.get("spiffe_ids")
if not isinstance(sels, list) or not isinstance(ids, list):
    sys.exit("%s: no selectors or spiffe_ids list in %r" % (name, d))
got = sorted(s for s in sels if s.split(":", 1)[0] in ("cgroup", "container", "k8s", "systemd"))
for s in got:
    print("    " + s)
errors = []
for s in want:
    if s not in got:
        errors.append("missing   " + s)
for s in got:
    if s not in want:
        errors.append("unexpected " + s)
if (spiffe_id in ids) != (has_id == "yes"):
    errors.append("%s %s among its identities %r" %
                  ("has not" if has_id == "yes" else "has", spiffe_id, ids))
if errors:
    sys.exit("%s: the agent showed other selectors or identities than expected:\n  %s\n"
             "all selectors: %r" % (name, "\n  ".join(errors), sels))
' "$IT_TMP/$wl.whoami" "$IT_TMP/$wl.want" "$HAS_ID" "$SPIFFE_ID" "$wl" ||
        fail "workload $wl: see above"
}

# check_fetch NAME: a token for the docker entry when HAS_ID=yes, else a
# refusal (exit status 1).
check_fetch() {
    rc=$(cat "$IT_TMP/$1.fetch.rc")
    if [ "$HAS_ID" = yes ]; then
        [ "$rc" = 0 ] || fail "workload $1: sockid fetch exited with status $rc: $(cat "$IT_TMP/$1.fetch.err")"
        $PY -c '
import base64, json, sys
tok = open(sys.argv[1]).read().strip()
parts = tok.split(".")
if len(parts) != 3:
    sys.exit("not a compact JWT: %r" % tok)
p = parts[1] + "=" * (-len(parts[1]) % 4)
claims = json.loads(base64.urlsafe_b64decode(p))
aud = claims.get("aud")
aud = aud if isinstance(aud, list) else [aud]
if claims.get("sub") != sys.argv[2] or "sockid-test" not in aud:
    sys.exit("the token says sub %r aud %r, expected %s for sockid-test" %
             (claims.get("sub"), claims.get("aud"), sys.argv[2]))
' "$IT_TMP/$1.fetch" "$SPIFFE_ID" || fail "workload $1: sockid fetch: see above"
        note "    token: sub $SPIFFE_ID, aud sockid-test"
    else
        [ "$rc" = 1 ] || fail "workload $1: sockid fetch exited with status $rc, expected 1 (no identity): $(cat "$IT_TMP/$1.fetch.err")"
        note "    no token (sockid fetch: exit 1)"
    fi
}

# run_v2 NAME REL HAS_ID EXPECTED...: a workload moved into the v2 cgroup REL
# ("" for the root) shows the cgroup: selectors that follow and EXPECTED.
run_v2() {
    wl=$1
    rel=$2
    HAS_ID=$3
    shift 3
    [ -n "$rel" ] && cg2_make "$rel"
    workload_start "$wl"
    workload_move "$WL_PID" "$rel"
    workload_in "$WL_PID" "0::${rel:-/}"
    workload_finish "$wl"
    note "$wl: ${rel:-/}"
    check_selectors "$wl" "$(expected_cgroup "${rel:-/}")" "$@"
    check_fetch "$wl"
}

# --- the agent, and an entry for the docker scope's container ----------------

# Fixed ids, so that every cgroup name this test uses is known in advance:
# a run killed before its cleanup (SIGKILL) leaves names the next run
# reuses and removes.
test_hex() {
    printf 'sockid test_cgroups %s' "$1" | sha256sum | cut -c1-64
}
HEX=$(test_hex docker)
KHEX=$(test_hex cri-containerd)
PODHEX=$(test_hex pod)
[ ${#HEX} = 64 ] && [ ${#KHEX} = 64 ] || fail "cannot compute the container ids with sha256sum"
POD_UID=$(printf '%s' "$PODHEX" | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
POD_UID_=$(printf '%s' "$POD_UID" | tr - _)
SPIFFE_ID=spiffe://example.org/cgroup-test/docker-demo
UMGR=/user.slice/user-$USER_UID.slice/user@$USER_UID.service

agent_start agent "$SOCK" --trust-domain example.org
PID=$AGENT_PID
agent_wait_ready "$PID" "$SOCK"
admin_wait_ready "$PID" "$ADMIN"
for a in cgroup container systemd; do
    grep -q "attestor $a loaded" "$AGENT_LOG" || fail "the agent did not load the $a attestor:
$(cat "$AGENT_LOG")"
done

ENTRY=$("$SOCKID" entry create --admin-socket "$ADMIN" --spiffe-id "$SPIFFE_ID" \
    --selector "container:id:$HEX" 2>"$ERR") ||
    fail "sockid entry create exited with status $?: $(cat "$ERR")"
note "entry $ENTRY: $SPIFFE_ID for container:id:$HEX"

# --- v1: memory:/sockid-test-PID with libcgroup -------------------------------

V1REL=/sockid-test-$$
if [ -n "$V1MEM" ]; then
    cgcreate -g "memory:$V1REL" 2>"$ERR" || fail "cgcreate -g memory:$V1REL failed: $(cat "$ERR")"
    CG_V1=memory:$V1REL
    [ -d "$V1MEM$V1REL" ] || fail "cgcreate made no $V1MEM$V1REL"
    # In the v2 hierarchy the workload goes to a cgroup that says nothing
    # (the plain one below), so that only the v1 line is new.
    cg2_make "$V1REL"
    workload_start v1 cgexec -g "memory:$V1REL"
    workload_move "$WL_PID" "$V1REL"
    workload_in "$WL_PID" "0::$V1REL" "$(awk -F: -v k="$V1KEY" '$2 == k { print $1; exit }' /proc/self/cgroup):$V1KEY:$V1REL"
    workload_finish v1
    HAS_ID=no
    note "v1: $V1KEY:$V1REL (libcgroup), and $V1REL in v2"
    check_selectors v1 "$(expected_cgroup "$V1REL" "$V1KEY" "$V1REL")"
    check_fetch v1
else
    skip_note "the v1 case: no v1 memory hierarchy is mounted (a pure cgroup v2 host)"
fi

# --- v2 -----------------------------------------------------------------------

run_v2 plain "/sockid-test-$$" no

run_v2 docker "/system.slice/docker-$HEX.scope" yes \
    "container:id:$HEX" container:runtime:docker \
    "systemd:scope:docker-$HEX.scope" systemd:slice:system.slice

run_v2 kubepods "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod$POD_UID_.slice/cri-containerd-$KHEX.scope" no \
    "container:id:$KHEX" container:runtime:containerd \
    "k8s:pod-uid:$POD_UID" k8s:qos:burstable \
    "systemd:scope:cri-containerd-$KHEX.scope" "systemd:slice:kubepods-burstable-pod$POD_UID_.slice"

run_v2 system-unit /system.slice/demo.service no \
    systemd:unit:demo.service systemd:slice:system.slice

run_v2 user-unit "$UMGR/app.slice/demo.service" no \
    systemd:user-unit:demo.service "systemd:user:$USER_UID"

# The forgeries: names only root or the system manager may give, made
# inside the user's delegated subtree. The user's own selectors, no more.
run_v2 forged-docker "$UMGR/docker-$HEX.scope" no \
    "systemd:user-unit:docker-$HEX.scope" "systemd:user:$USER_UID"

run_v2 forged-service "$UMGR/demo.service" no \
    systemd:user-unit:demo.service "systemd:user:$USER_UID"

# The root cgroup: not the container's either. Its other selectors come
# from where this test runs (a v1 name=systemd line, say), so only the
# identity is checked.
HAS_ID=no
cg2_root_wl=root
workload_start "$cg2_root_wl"
workload_move "$WL_PID" ""
workload_in "$WL_PID" "0::/"
workload_finish "$cg2_root_wl"
$PY -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("\n".join("    " + s for s in sorted(d["selectors"])
                if s.split(":", 1)[0] in ("cgroup", "container", "k8s", "systemd")))
bad = [s for s in d["selectors"] if s.startswith("container:id:")]
if bad or sys.argv[2] in d["spiffe_ids"]:
    sys.exit("a process in the root cgroup has %r and identities %r" % (bad, d["spiffe_ids"]))
' "$IT_TMP/root.whoami" "$SPIFFE_ID" >"$IT_TMP/root.shown" || fail "workload root: see above"
note "root: /"
cat "$IT_TMP/root.shown"
check_fetch root

# --- cleanup, checked ---------------------------------------------------------

leaves=$CG_LEAVES
cg_cleanup || fail "the cleanup left cgroups behind (see above)"
# The leaves are this test's alone (parents such as /user.slice may be
# another test's again by now).
for rel in $leaves; do
    [ -d "$CG2$rel" ] && fail "the cgroup $CG2$rel is still there after the cleanup"
done
[ -n "$V1MEM" ] && [ -d "$V1MEM$V1REL" ] && fail "the v1 cgroup $V1MEM$V1REL is still there after the cleanup"
note "every cgroup the test made is gone"
note PASS
