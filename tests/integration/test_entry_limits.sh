#!/bin/sh
# The limits of an entry, through the CLI: each entry past a limit is refused
# with exit status 1 and a message that names the limit, and nothing is
# stored; an entry at the limit is accepted.
#
# Usage: test_entry_limits.sh AGENT SOCKID IT_PROBE
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
SOCKID_ADMIN_SOCKET=$IT_TMP/agent-admin.sock
export SOCKID_ADMIN_SOCKET
ERR=$IT_TMP/stderr
OUT=$IT_TMP/stdout
MAX_TTL=600
CONF=$IT_TMP/agent.conf
printf '[agent]\nmax_ttl = %s\ndefault_ttl = 300\n' "$MAX_TTL" >"$CONF"

agent_start agent "$SOCK" --trust-domain example.org --config "$CONF"
PID=$AGENT_PID
agent_wait_ready "$PID" "$SOCK"
admin_wait_ready "$PID" "$SOCKID_ADMIN_SOCKET"

# entry_count: how many entries the agent holds.
entry_count() {
    "$SOCKID" entry list --json 2>"$ERR" | /usr/bin/python3 -c '
import json, sys
print(len(json.load(sys.stdin)))' || fail "sockid entry list --json failed: $(cat "$ERR")"
}

# refused WHAT NEEDLE... -- CREATE-ARGS...: sockid entry create with the
# arguments exits 1, prints nothing on stdout, and its stderr holds every
# needle (fixed strings, case-insensitive); the store is unchanged.
refused() {
    what=$1
    shift
    needles=
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        needles="$needles$1
"
        shift
    done
    [ $# -gt 0 ] || fail "refused $what: no -- before the arguments"
    shift
    before=$(entry_count)
    "$SOCKID" entry create "$@" >"$OUT" 2>"$ERR"
    status=$?
    [ "$status" = 1 ] || fail "$what: sockid entry create exited with status $status, expected 1; stdout: $(cat "$OUT"); stderr: $(cat "$ERR")"
    [ -s "$OUT" ] && fail "$what: a refused create printed on stdout: $(cat "$OUT")"
    msg=$(cat "$ERR")
    printf '%s' "$needles" | while IFS= read -r needle; do
        [ -n "$needle" ] || continue
        printf '%s\n' "$msg" | grep -Fiq -- "$needle" || {
            echo "FAIL: $what: the message does not say '$needle': $msg" >&2
            exit 1
        }
    done || fail "$what: see above"
    after=$(entry_count)
    [ "$before" = "$after" ] || fail "$what: refused, yet the agent went from $before to $after entries"
    note "$what: exit 1: $msg"
}

# accepted WHAT CREATE-ARGS...: sockid entry create prints an entry id; sets
# ACCEPTED_ID.
accepted() {
    what=$1
    shift
    ACCEPTED_ID=$("$SOCKID" entry create "$@" 2>"$ERR") ||
        fail "$what: sockid entry create exited with status $?: $(cat "$ERR")"
    printf '%s\n' "$ACCEPTED_ID" | grep -Eq '^[0-9a-f]{32}$' ||
        fail "$what: sockid entry create printed '$ACCEPTED_ID', expected an entry id"
}

# selectors N: N distinct --selector arguments, as one word list.
selectors() {
    i=1
    while [ "$i" -le "$1" ]; do
        printf ' --selector unix:supplementary_gid:%d' "$((1000 + i))"
        i=$((i + 1))
    done
}

# spiffe_id LEN: a SPIFFE ID of the trust domain example.org, LEN bytes long,
# with a path of 100-byte segments.
spiffe_id() {
    /usr/bin/python3 -c '
import sys
n = int(sys.argv[1])
prefix = "spiffe://example.org"
path = ""
while len(prefix) + len(path) < n:
    path += "/" + "s" * 99
print((prefix + path)[:n])' "$1"
}

# --- past each limit ----------------------------------------------------------------
# shellcheck disable=SC2046 # the selector list splits into words on purpose
refused "33 selectors" "at most 32 selectors" "33" -- \
    --spiffe-id spiffe://example.org/many $(selectors 33)

LONG=$(spiffe_id 2049)
[ "${#LONG}" = 2049 ] || fail "precondition: the long SPIFFE ID is ${#LONG} bytes, expected 2049"
refused "a 2049-byte SPIFFE ID" "SPIFFE ID" "2049" "2048" -- \
    --spiffe-id "$LONG" --selector unix:uid:1000

refused "a SPIFFE ID of another trust domain" "other.example" "example.org" "trust domain" -- \
    --spiffe-id spiffe://other.example/web --selector unix:uid:1000

refused "selector unix::1000 (empty key)" "unix::1000" "key is empty" -- \
    --spiffe-id spiffe://example.org/web --selector unix::1000
refused "selector :uid:1 (empty type)" ":uid:1" "type is empty" -- \
    --spiffe-id spiffe://example.org/web --selector :uid:1
refused "selector unix:uid: (empty value)" "unix:uid:" "value is empty" -- \
    --spiffe-id spiffe://example.org/web --selector unix:uid:
refused "an empty selector among good ones" "selector 2 of 3" "key is empty" -- \
    --spiffe-id spiffe://example.org/web --selector unix:uid:1000 --selector unix::1000 \
    --selector unix:gid:1000

refused "ttl past max_ttl" "ttl" "$((MAX_TTL + 1))" "$MAX_TTL" "max_ttl" -- \
    --spiffe-id spiffe://example.org/web --selector unix:uid:1000 --ttl "$((MAX_TTL + 1))"

AUDS=
i=1
while [ "$i" -le 17 ]; do
    AUDS="$AUDS --audience aud-$i"
    i=$((i + 1))
done
# shellcheck disable=SC2086 # the audience list splits into words on purpose
refused "17 audiences" "at most 16 audiences" "17" -- \
    --spiffe-id spiffe://example.org/web --selector unix:uid:1000 $AUDS

# --- at each limit ------------------------------------------------------------------
# shellcheck disable=SC2046
accepted "32 selectors" --spiffe-id spiffe://example.org/many $(selectors 32)
ID32=$ACCEPTED_ID
n=$("$SOCKID" entry show "$ID32" --json 2>"$ERR" |
    /usr/bin/python3 -c 'import json, sys; print(len(json.load(sys.stdin)["selectors"]))')
[ "$n" = 32 ] || fail "the entry with 32 selectors holds $n: $(cat "$ERR")"
note "32 selectors: accepted ($ID32), entry show lists 32"

MAXID=$(spiffe_id 2048)
[ "${#MAXID}" = 2048 ] || fail "precondition: the SPIFFE ID is ${#MAXID} bytes, expected 2048"
accepted "a 2048-byte SPIFFE ID" --spiffe-id "$MAXID" --selector unix:uid:1000
ID2048=$ACCEPTED_ID
got=$("$SOCKID" entry show "$ID2048" --json 2>"$ERR" |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["spiffe_id"])')
[ "$got" = "$MAXID" ] || fail "the entry $ID2048 does not hold the 2048-byte SPIFFE ID exactly: $(cat "$ERR")"
note "2048-byte SPIFFE ID: accepted ($ID2048), stored exactly"

# shellcheck disable=SC2086
accepted "16 audiences and ttl = max_ttl" --spiffe-id spiffe://example.org/web \
    --selector unix:uid:1000 --ttl "$MAX_TTL" $(echo $AUDS | sed 's/ --audience aud-17$//')
note "16 audiences and a ttl of $MAX_TTL (max_ttl): accepted ($ACCEPTED_ID)"

n=$(entry_count)
[ "$n" = 3 ] || fail "the agent holds $n entries, expected the 3 accepted ones"

agent_stop "$PID" "$SOCK" TERM
note PASS
