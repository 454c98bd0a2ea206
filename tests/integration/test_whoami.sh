#!/bin/sh
# sockid whoami and sockid health against a real agent: the caller's uid and
# the path of the binary it runs, in text and in JSON; exit 3 with a message
# when no agent answers; and, as root, a process started under another uid is
# attested as that uid, not as the root that started it.
#
# Usage: test_whoami.sh AGENT SOCKID IT_PROBE
set -u
[ $# -eq 3 ] || {
    echo "usage: $0 AGENT SOCKID IT_PROBE" >&2
    exit 2
}
AGENT=$1
SOCKID=$2
IT_PROBE=$3
. "$(dirname "$0")/lib.sh"
it_setup

SOCK=$IT_TMP/agent.sock
ERR=$IT_TMP/stderr
agent_start agent "$SOCK"
PID=$AGENT_PID
agent_wait_ready "$PID" "$SOCK"

uid=$(id -u)
gid=$(id -g)
exe=$(realpath "$SOCKID") || fail "realpath $SOCKID"

# has_selector TEXT SELECTOR: SELECTOR on a line of its own (leading blanks
# allowed), so that unix:uid:1 does not match unix:uid:12345.
has_selector() {
    printf '%s\n' "$1" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//' | grep -Fxq -- "$2"
}

# --- text output, socket from the flag -----------------------------------
out=$("$SOCKID" whoami --socket "$SOCK" 2>"$ERR") ||
    fail "sockid whoami exited with status $?: $(cat "$ERR")"
has_selector "$out" "unix:uid:$uid" || fail "sockid whoami does not show unix:uid:$uid:
$out"
has_selector "$out" "unix:path:$exe" || fail "sockid whoami does not show unix:path:$exe:
$out"
note "sockid whoami shows unix:uid:$uid and unix:path:$exe"

# --- JSON output, socket from the environment ----------------------------
json=$(SOCKID_AGENT_SOCKET=$SOCK "$SOCKID" whoami --json 2>"$ERR") ||
    fail "sockid whoami --json exited with status $?: $(cat "$ERR")"
printf '%s' "$json" | /usr/bin/python3 -c '
import json, sys
uid, gid, exe = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
try:
    d = json.load(sys.stdin)
except ValueError as e:
    sys.exit("the output of sockid whoami --json is not JSON: %s" % e)
sels = d.get("selectors")
if not isinstance(sels, list):
    sys.exit("no selectors list in %r" % d)
for want in ("unix:uid:%d" % uid, "unix:gid:%d" % gid, "unix:path:" + exe):
    if want not in sels:
        sys.exit("%s is not among the selectors %r" % (want, sels))
if d.get("uid") != uid or d.get("gid") != gid:
    sys.exit("uid/gid are %r/%r, expected %d/%d" % (d.get("uid"), d.get("gid"), uid, gid))
if not isinstance(d.get("pid"), int) or d["pid"] <= 0:
    sys.exit("pid is %r" % d.get("pid"))
' "$uid" "$gid" "$exe" || fail "sockid whoami --json: see above; output was:
$json"
note "sockid whoami --json parses and holds unix:uid:$uid, unix:gid:$gid, unix:path:$exe"

# --- health ---------------------------------------------------------------
"$SOCKID" health --socket "$SOCK" >"$IT_TMP/health" 2>"$ERR" ||
    fail "sockid health exited with status $?: $(cat "$ERR")"
note "sockid health: exit 0"

# --- another uid (root only) ----------------------------------------------
if [ "$uid" = 0 ]; then
    out=$(setpriv --reuid 12345 --regid 12345 --clear-groups \
        "$SOCKID" whoami --socket "$SOCK" 2>"$ERR") ||
        fail "sockid whoami as uid 12345 exited with status $?: $(cat "$ERR")"
    has_selector "$out" "unix:uid:12345" || fail "as uid 12345, no unix:uid:12345:
$out"
    has_selector "$out" "unix:gid:12345" || fail "as uid 12345, no unix:gid:12345:
$out"
    has_selector "$out" "unix:uid:0" && fail "as uid 12345, the agent still says unix:uid:0:
$out"
    note "a process started under uid 12345 shows unix:uid:12345 and unix:gid:12345, not unix:uid:0"
else
    skip_note "a process under another uid needs root (running as uid $uid)"
fi

# --- no agent ---------------------------------------------------------------
agent_stop "$PID" "$SOCK" TERM
"$SOCKID" whoami --socket "$SOCK" >"$IT_TMP/out" 2>"$ERR"
status=$?
[ "$status" = 3 ] || fail "with the agent stopped, sockid whoami exited with status $status, expected 3"
[ -s "$ERR" ] || fail "with the agent stopped, sockid whoami printed nothing on stderr"
note "with the agent stopped: exit 3, stderr: $(cat "$ERR")"
note PASS
