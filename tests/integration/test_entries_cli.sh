#!/bin/sh
# Registration entries through the CLI, as an operator and a workload see
# them: sockid entry create / list / show / delete on the admin socket, and
# sockid whoami listing the identities the caller's selectors earn. An entry
# survives a restart of the agent on the same data dir; a duplicate is refused
# naming the first; an entry whose selectors the caller lacks is not the
# caller's; and, as root, an entry for another uid is that uid's only.
#
# Usage: test_entries_cli.sh AGENT SOCKID IT_PROBE
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
ADMIN=$IT_TMP/agent-admin.sock
ERR=$IT_TMP/stderr
uid=$(id -u)
WEB=spiffe://example.org/web

# The workload socket from the environment, the admin socket from the flag
# (and, further down, from the environment too).
SOCKID_AGENT_SOCKET=$SOCK
export SOCKID_AGENT_SOCKET
unset SOCKID_ADMIN_SOCKET

agent_start agent "$SOCK" --trust-domain example.org
PID=$AGENT_PID
agent_wait_ready "$PID" "$SOCK"
admin_wait_ready "$PID" "$ADMIN"

# identities TEXT: the lines under "identities:" in sockid whoami's text
# output, trimmed.
identities() {
    printf '%s\n' "$1" | sed -n '/^identities:/,$p' | sed '1d; s/^[[:space:]]*//; s/[[:space:]]*$//'
}

# whoami_has ID [SETPRIV-ARGS...]: does sockid whoami (text and --json, run
# under setpriv with the arguments when given) list ID among the caller's
# identities? Both forms must agree, or the test fails.
whoami_has() {
    want=$1
    shift
    if [ $# -gt 0 ]; then
        set -- setpriv "$@" "$SOCKID"
    else
        set -- "$SOCKID"
    fi
    text=$("$@" whoami 2>"$ERR") || fail "sockid whoami exited with status $?: $(cat "$ERR")"
    json=$("$@" whoami --json 2>"$ERR") ||
        fail "sockid whoami --json exited with status $?: $(cat "$ERR")"
    in_text=no
    identities "$text" | grep -Fxq -- "$want" && in_text=yes
    in_json=$(printf '%s' "$json" | /usr/bin/python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except ValueError as e:
    sys.exit("sockid whoami --json printed no JSON: %s" % e)
ids = d.get("spiffe_ids")
if not isinstance(ids, list):
    sys.exit("sockid whoami --json has no spiffe_ids list: %r" % d)
print("yes" if sys.argv[1] in ids else "no")
' "$want") || fail "sockid whoami --json: see above; output was: $json"
    [ "$in_text" = "$in_json" ] || fail "sockid whoami's text and JSON disagree about $want:
text (identities: $in_text):
$text
json (spiffe_ids: $in_json): $json"
    WHOAMI_TEXT=$text
    WHOAMI_JSON=$json
    [ "$in_text" = yes ]
}

# entry_json_check JSON ID SPIFFE_ID SELECTOR...: JSON (one object, or an
# array holding it) describes entry ID with this SPIFFE ID and exactly these
# selectors.
entry_json_check() {
    j=$1
    shift
    printf '%s' "$j" | /usr/bin/python3 -c '
import json, sys
want_id, want_sid, want_sels = sys.argv[1], sys.argv[2], sorted(sys.argv[3:])
try:
    d = json.load(sys.stdin)
except ValueError as e:
    sys.exit("not JSON: %s" % e)
if isinstance(d, list):
    found = [e for e in d if isinstance(e, dict) and e.get("id") == want_id]
    if len(found) != 1:
        sys.exit("%d entries with id %s in the array" % (len(found), want_id))
    d = found[0]
if d.get("id") != want_id:
    sys.exit("id is %r, expected %s" % (d.get("id"), want_id))
if d.get("spiffe_id") != want_sid:
    sys.exit("spiffe_id is %r, expected %s" % (d.get("spiffe_id"), want_sid))
if sorted(d.get("selectors") or []) != want_sels:
    sys.exit("selectors are %r, expected %r" % (d.get("selectors"), want_sels))
for k in ("ttl_seconds", "created_at", "revision"):
    if not isinstance(d.get(k), int) or d[k] <= 0:
        sys.exit("%s is %r" % (k, d.get(k)))
' "$@"
}

# --- create, then whoami ----------------------------------------------------
ID=$("$SOCKID" entry create --admin-socket "$ADMIN" --spiffe-id "$WEB" \
    --selector "unix:uid:$uid" 2>"$ERR") ||
    fail "sockid entry create exited with status $?: $(cat "$ERR")"
printf '%s\n' "$ID" | grep -Eq '^[0-9a-f]{32}$' ||
    fail "sockid entry create printed '$ID', expected one entry id (32 hex characters)"
note "entry create: $ID"

whoami_has "$WEB" || fail "after creating $ID, sockid whoami does not list $WEB:
$WHOAMI_TEXT
$WHOAMI_JSON"
note "whoami lists $WEB under identities (text) and spiffe_ids (--json)"

# --- entries whose selectors the caller does not all have ------------------------
NOPE=spiffe://example.org/not-mine
ID_NOPE=$("$SOCKID" entry create --admin-socket "$ADMIN" --spiffe-id "$NOPE" \
    --selector "unix:uid:$uid" --selector unix:gid:4242424 2>"$ERR") ||
    fail "creating $NOPE exited with status $?: $(cat "$ERR")"
OTHER=spiffe://example.org/other-uid
ID_OTHER=$("$SOCKID" entry create --admin-socket "$ADMIN" --spiffe-id "$OTHER" \
    --selector unix:uid:4242424 2>"$ERR") ||
    fail "creating $OTHER exited with status $?: $(cat "$ERR")"
whoami_has "$NOPE" && fail "whoami lists $NOPE, whose selector unix:gid:4242424 the caller lacks:
$WHOAMI_TEXT"
whoami_has "$OTHER" && fail "whoami lists $OTHER, whose selector unix:uid:4242424 the caller lacks:
$WHOAMI_TEXT"
whoami_has "$WEB" || fail "whoami stopped listing $WEB once other entries exist:
$WHOAMI_TEXT"
note "entries with a selector the caller lacks ($ID_NOPE: one of two missing; $ID_OTHER: the only one) are not listed"

# --- list, show, --json -------------------------------------------------------
SOCKID_ADMIN_SOCKET=$ADMIN
export SOCKID_ADMIN_SOCKET
out=$("$SOCKID" entry list 2>"$ERR") || fail "sockid entry list exited with status $?: $(cat "$ERR")"
for id in "$ID" "$ID_NOPE" "$ID_OTHER"; do
    printf '%s\n' "$out" | grep -Fxq "entry $id" || fail "sockid entry list does not show entry $id:
$out"
done
printf '%s\n' "$out" | grep -Eq "^[[:space:]]*spiffe id[[:space:]]+$WEB\$" ||
    fail "sockid entry list does not show the SPIFFE ID $WEB:
$out"
json=$("$SOCKID" entry list --json 2>"$ERR") ||
    fail "sockid entry list --json exited with status $?: $(cat "$ERR")"
entry_json_check "$json" "$ID" "$WEB" "unix:uid:$uid" ||
    fail "sockid entry list --json, entry $ID: see above; output was: $json"
entry_json_check "$json" "$ID_NOPE" "$NOPE" "unix:uid:$uid" unix:gid:4242424 ||
    fail "sockid entry list --json, entry $ID_NOPE: see above; output was: $json"
n=$(printf '%s' "$json" | /usr/bin/python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
[ "$n" = 3 ] || fail "sockid entry list --json lists $n entries, expected 3: $json"
note "entry list (text and --json) shows the 3 entries"

json=$("$SOCKID" entry list --json --spiffe-id "$WEB" 2>"$ERR") ||
    fail "sockid entry list --spiffe-id exited with status $?: $(cat "$ERR")"
n=$(printf '%s' "$json" | /usr/bin/python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
[ "$n" = 1 ] && entry_json_check "$json" "$ID" "$WEB" "unix:uid:$uid" ||
    fail "sockid entry list --spiffe-id $WEB should list exactly entry $ID: $json"
json=$("$SOCKID" entry list --json --selector unix:gid:4242424 2>"$ERR") ||
    fail "sockid entry list --selector exited with status $?: $(cat "$ERR")"
n=$(printf '%s' "$json" | /usr/bin/python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
[ "$n" = 1 ] && entry_json_check "$json" "$ID_NOPE" "$NOPE" "unix:uid:$uid" unix:gid:4242424 ||
    fail "sockid entry list --selector unix:gid:4242424 should list exactly entry $ID_NOPE: $json"
note "entry list --spiffe-id and --selector filter"

out=$("$SOCKID" entry show "$ID" 2>"$ERR") || fail "sockid entry show exited with status $?: $(cat "$ERR")"
printf '%s\n' "$out" | grep -Fxq "entry $ID" && printf '%s\n' "$out" | grep -Fq "$WEB" &&
    printf '%s\n' "$out" | grep -Fq "unix:uid:$uid" ||
    fail "sockid entry show $ID does not show the entry, its SPIFFE ID and selector:
$out"
json=$("$SOCKID" entry show "$ID" --json 2>"$ERR") ||
    fail "sockid entry show --json exited with status $?: $(cat "$ERR")"
entry_json_check "$json" "$ID" "$WEB" "unix:uid:$uid" ||
    fail "sockid entry show $ID --json: see above; output was: $json"
note "entry show (text and --json) shows $ID"

# --- a duplicate ----------------------------------------------------------------
out=$("$SOCKID" entry create --spiffe-id "$WEB" --selector "unix:uid:$uid" 2>"$ERR")
status=$?
[ "$status" = 1 ] || fail "a duplicate create exited with status $status, expected 1 (stdout: $out)"
grep -Fq "$ID" "$ERR" || fail "the refusal of a duplicate does not name the first entry $ID: $(cat "$ERR")"
[ -z "$out" ] || fail "a refused duplicate printed on stdout: $out"
dup_msg=$(cat "$ERR")
n=$("$SOCKID" entry list --json --spiffe-id "$WEB" 2>"$ERR" |
    /usr/bin/python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
[ "$n" = 1 ] || fail "after a refused duplicate, $n entries have the SPIFFE ID $WEB, expected 1"
note "duplicate: exit 1: $dup_msg"

# --- delete -----------------------------------------------------------------------
"$SOCKID" entry delete "$ID" >"$IT_TMP/out" 2>"$ERR" ||
    fail "sockid entry delete $ID exited with status $?: $(cat "$ERR")"
whoami_has "$WEB" && fail "after deleting $ID, sockid whoami still lists $WEB:
$WHOAMI_TEXT"
"$SOCKID" entry show "$ID" >"$IT_TMP/out" 2>"$ERR"
status=$?
[ "$status" = 1 ] || fail "sockid entry show of the deleted $ID exited with status $status, expected 1"
grep -Fq "$ID" "$ERR" || fail "the refusal to show the deleted $ID does not name it: $(cat "$ERR")"
show_msg=$(cat "$ERR")
"$SOCKID" entry list 2>"$ERR" | grep -Fq "$ID" && fail "sockid entry list still shows the deleted $ID"
note "delete: whoami no longer lists $WEB; entry show exits 1: $show_msg"

# --- an entry survives a restart ---------------------------------------------------
ID2=$("$SOCKID" entry create --spiffe-id "$WEB" --selector "unix:uid:$uid" 2>"$ERR") ||
    fail "creating $WEB again exited with status $?: $(cat "$ERR")"
[ "$ID2" != "$ID" ] || fail "a new entry got the id $ID of the deleted one"
agent_stop "$PID" "$SOCK" TERM
agent_start agent "$SOCK" --trust-domain example.org
PID=$AGENT_PID
agent_wait_ready "$PID" "$SOCK"
admin_wait_ready "$PID" "$ADMIN"
json=$("$SOCKID" entry list --json 2>"$ERR") ||
    fail "sockid entry list after the restart exited with status $?: $(cat "$ERR")"
entry_json_check "$json" "$ID2" "$WEB" "unix:uid:$uid" ||
    fail "after the restart, entry $ID2: see above; list was: $json"
ids=$(printf '%s' "$json" | /usr/bin/python3 -c '
import json, sys
print(" ".join(sorted(e["id"] for e in json.load(sys.stdin))))')
want=$(printf '%s\n' "$ID2" "$ID_NOPE" "$ID_OTHER" | sort | tr '\n' ' ' | sed 's/ $//')
[ "$ids" = "$want" ] || fail "after the restart the entries are [$ids], expected [$want]"
whoami_has "$WEB" || fail "after the restart, sockid whoami does not list $WEB:
$WHOAMI_TEXT"
note "after SIGTERM and a new agent on the same data dir: the same 3 entries, whoami lists $WEB"

# --- another uid (root only) ----------------------------------------------------
if [ "$uid" = 0 ]; then
    U=spiffe://example.org/uid-12345
    ID_U=$("$SOCKID" entry create --spiffe-id "$U" --selector unix:uid:12345 2>"$ERR") ||
        fail "creating $U exited with status $?: $(cat "$ERR")"
    whoami_has "$U" --reuid 12345 --regid 12345 --clear-groups ||
        fail "a process running as uid 12345 is not given $U ($ID_U):
$WHOAMI_TEXT"
    whoami_has "$WEB" --reuid 12345 --regid 12345 --clear-groups &&
        fail "a process running as uid 12345 is given root's $WEB:
$WHOAMI_TEXT"
    whoami_has "$U" && fail "root is given $U, whose selector is unix:uid:12345:
$WHOAMI_TEXT"
    note "as uid 12345 (setpriv): $U listed, $WEB not; as root: $U not listed"
else
    skip_note "a workload under another uid needs root (running as uid $uid)"
fi

agent_stop "$PID" "$SOCK" TERM
[ -e "$ADMIN" ] && fail "after SIGTERM the agent left its admin socket $ADMIN behind"
note PASS
