#!/bin/sh
# Tokens from the real agent, verified by libraries that know nothing of
# sockid: node's jose 6 (createLocalJWKSet + jwtVerify) and PyJWT (Debian's
# python3-jwt), each given only the JWKS that 'sockid bundle' printed, with
# the audience checked. A token for another audience is rejected by both,
# and by 'sockid validate'. After 'sockid key rotate', a token signed by the
# retired key still verifies with the new bundle, and new tokens carry the
# new kid.
#
# Needs what setup.sh installs (the interop_setup test): fails, never skips,
# without it.
#
# Usage: test_interop.sh AGENT SOCKID IT_PROBE NODE_DIR
set -u
[ $# -eq 4 ] || {
    echo "usage: $0 AGENT SOCKID IT_PROBE NODE_DIR" >&2
    exit 2
}
AGENT=$1
SOCKID=$2
IT_PROBE=$3
NODE_DIR=$4
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
# shellcheck source=../integration/lib.sh
. "$HERE/../integration/lib.sh"
it_setup

NODE_DIR=$(cd "$NODE_DIR" 2>/dev/null && pwd) ||
    fail "no directory $4: run the interop_setup test (tests/interop/setup.sh $4)"
SOCKID_JOSE_DIR=$NODE_DIR
export SOCKID_JOSE_DIR
unset SOCKID_AGENT_SOCKET SOCKID_ADMIN_SOCKET

[ -f "$NODE_DIR/node_modules/jose/package.json" ] ||
    fail "node's jose is not in $NODE_DIR: run the interop_setup test (tests/interop/setup.sh $NODE_DIR)"
command -v node >/dev/null 2>&1 || fail "node is not on PATH"
[ -x "$PY" ] || fail "$PY is missing (Debian package python3)"

D=$IT_TMP
SOCK=$D/agent.sock
ADMIN=$D/admin.sock
ERR=$D/stderr
ID=spiffe://example.org/interop

# --- the agent --------------------------------------------------------------
LOG=$D/agent.log
IT_LOGS="$IT_LOGS $LOG"
setpriv --pdeathsig KILL -- env --default-signal=INT,TERM \
    "$AGENT" --socket "$SOCK" --admin-socket "$ADMIN" --data-dir "$D/data" \
    --trust-domain example.org </dev/null >>"$LOG" 2>&1 &
PID=$!
IT_AGENTS="$IT_AGENTS $PID"

# wait_socket PATH: until the agent accepts a connection on PATH (10 s).
wait_socket() {
    i=0
    while [ $i -lt 500 ]; do
        is_running "$PID" || {
            wait "$PID"
            fail "the agent (pid $PID) exited during startup with status $?"
        }
        "$IT_PROBE" connect "$1" 2>/dev/null && return 0
        sleep_tick
        i=$((i + 1))
    done
    fail "the agent (pid $PID) did not accept connections on $1 within 10 s"
}
wait_socket "$SOCK"
wait_socket "$ADMIN"

# --- helpers ------------------------------------------------------------------
# fetch AUD: sets TOKEN to the one token 'sockid fetch --audience AUD' prints.
fetch() {
    TOKEN=$("$SOCKID" fetch --socket "$SOCK" --audience "$1" 2>"$ERR") ||
        fail "sockid fetch --audience $1 exited with status $?: $(cat "$ERR")"
    lines=$(printf '%s\n' "$TOKEN" | wc -l)
    [ "$lines" = 1 ] || fail "sockid fetch --audience $1 printed $lines lines, expected one token:
$TOKEN"
    printf '%s' "$TOKEN" | grep -Eq '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' ||
        fail "sockid fetch --audience $1 printed no compact JWT: $TOKEN"
}

# bundle FILE: 'sockid bundle' into FILE.
bundle() {
    "$SOCKID" bundle --socket "$SOCK" >"$1" 2>"$ERR" ||
        fail "sockid bundle exited with status $?: $(cat "$ERR")"
}

# accepts NAME JWKS TOKEN AUD: the verifier NAME (jose or pyjwt) accepts the
# token for AUD with the JWKS, and its "sub" is $ID. Sets KID to the token's.
accepts() {
    case "$1" in
    jose) set -- "$1" node "$HERE/verify.mjs" "$2" "$3" "$4" ;;
    pyjwt) set -- "$1" "$PY" "$HERE/verify.py" "$2" "$3" "$4" ;;
    esac
    name=$1
    shift
    out=$("$@" "$ID" 2>"$ERR") || fail "$name rejected a token for audience $5 (exit $?): $(cat "$ERR")"
    KID=$(printf '%s' "$out" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["kid"])') ||
        fail "$name printed no kid: $out"
    note "$name accepts: $out"
}

# rejects_audience NAME JWKS TOKEN AUD: the verifier exits 1, and for the
# audience, not for some other reason (a missing key would also say no).
rejects_audience() {
    case "$1" in
    jose) set -- "$1" node "$HERE/verify.mjs" "$2" "$3" "$4" ;;
    pyjwt) set -- "$1" "$PY" "$HERE/verify.py" "$2" "$3" "$4" ;;
    esac
    name=$1
    shift
    "$@" >"$D/out" 2>"$ERR"
    status=$?
    [ "$status" = 1 ] ||
        fail "$name exited with status $status for a token verified for audience $5, expected 1 (rejected): $(cat "$D/out" "$ERR")"
    grep -q 'rejected (audience)' "$ERR" ||
        fail "$name rejected the token, but not for its audience: $(cat "$ERR")"
    note "$name rejects it for $5: $(cat "$ERR")"
}

# jwt_part TOKEN N: the Nth part (1: header, 2: payload), decoded.
jwt_part() {
    "$PY" -c '
import base64, sys
p = sys.argv[1].split(".")[int(sys.argv[2]) - 1]
sys.stdout.write(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)).decode())
' "$1" "$2"
}

# --- no identity yet: refused -------------------------------------------------
"$SOCKID" fetch --socket "$SOCK" --audience db >"$D/out" 2>"$ERR"
status=$?
[ "$status" = 1 ] || fail "sockid fetch with no entry for this process exited with status $status, expected 1"
grep -q 'no identity' "$ERR" || fail "sockid fetch with no entry for this process said: $(cat "$ERR")"
[ -s "$D/out" ] && fail "sockid fetch with no entry for this process printed: $(cat "$D/out")"
note "sockid fetch with no entry: exit 1, $(cat "$ERR")"

# --- an identity for this process -------------------------------------------
uid=$(id -u)
"$SOCKID" entry create --admin-socket "$ADMIN" --spiffe-id "$ID" --selector "unix:uid:$uid" \
    >"$D/entry" 2>"$ERR" || fail "sockid entry create exited with status $?: $(cat "$ERR")"
note "entry $(cat "$D/entry"): $ID for unix:uid:$uid"

fetch db
DB_TOKEN=$TOKEN
fetch other
OTHER_TOKEN=$TOKEN
bundle "$D/jwks.json"
note "bundle: $(cat "$D/jwks.json")"
note "token header: $(jwt_part "$DB_TOKEN" 1)"
note "token claims: $(jwt_part "$DB_TOKEN" 2)"

# The header DESIGN §2 promises, so that generic verifiers pick the key.
jwt_part "$DB_TOKEN" 1 | "$PY" -c '
import json, sys
h = json.load(sys.stdin)
if h.get("alg") != "EdDSA" or h.get("typ") != "JWT" or not h.get("kid"):
    sys.exit("the header is %r, expected alg EdDSA, typ JWT and a kid" % h)
' || fail "the token's header is not as DESIGN §2 says"

# --- node's jose and PyJWT --------------------------------------------------
accepts jose "$D/jwks.json" "$DB_TOKEN" db
accepts pyjwt "$D/jwks.json" "$DB_TOKEN" db
OLD_KID=$KID
rejects_audience jose "$D/jwks.json" "$OTHER_TOKEN" db
rejects_audience pyjwt "$D/jwks.json" "$OTHER_TOKEN" db
# The same token is fine for its own audience: only the audience failed.
accepts jose "$D/jwks.json" "$OTHER_TOKEN" other
accepts pyjwt "$D/jwks.json" "$OTHER_TOKEN" other

# --- sockid validate --------------------------------------------------------
out=$("$SOCKID" validate --socket "$SOCK" --audience db "$DB_TOKEN" 2>"$ERR") ||
    fail "sockid validate --audience db exited with status $? for a token for db: $(cat "$ERR")"
[ "$out" = "$ID" ] || fail "sockid validate --audience db printed '$out', expected $ID"
note "sockid validate --audience db: exit 0, $out"

printf '%s\n' "$DB_TOKEN" | "$SOCKID" validate --socket "$SOCK" --audience db - >"$D/out" 2>"$ERR" ||
    fail "sockid validate --audience db - (token on stdin) exited with status $?: $(cat "$ERR")"
note "sockid validate --audience db - (stdin): exit 0"

for args in "other $DB_TOKEN" "db $OTHER_TOKEN"; do
    # shellcheck disable=SC2086
    set -- $args
    "$SOCKID" validate --socket "$SOCK" --audience "$1" "$2" >"$D/out" 2>"$ERR"
    status=$?
    [ "$status" = 1 ] || fail "sockid validate --audience $1 exited with status $status for a token for another audience, expected 1"
    [ -s "$ERR" ] || fail "sockid validate --audience $1 said nothing on stderr about why the token is invalid"
    note "sockid validate --audience $1 (token for another audience): exit 1, $(cat "$ERR")"
done

json=$("$SOCKID" validate --socket "$SOCK" --audience other --json "$DB_TOKEN" 2>"$ERR")
status=$?
[ "$status" = 1 ] || fail "sockid validate --json --audience other exited with status $status, expected 1"
printf '%s' "$json" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
if d.get("valid") is not False or not d.get("reason"):
    sys.exit("expected valid false and a reason, got %r" % d)
' || fail "sockid validate --json --audience other printed: $json"
json=$("$SOCKID" validate --socket "$SOCK" --audience db --json "$DB_TOKEN" 2>"$ERR") ||
    fail "sockid validate --json --audience db exited with status $?: $(cat "$ERR")"
printf '%s' "$json" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
c = d.get("claims") or {}
if d.get("valid") is not True or d.get("spiffe_id") != sys.argv[1] or c.get("sub") != sys.argv[1] \
        or c.get("aud") not in ("db", ["db"]):
    sys.exit("expected valid true, spiffe_id and claims.sub %s, claims.aud db; got %r" % (sys.argv[1], d))
' "$ID" || fail "sockid validate --json --audience db printed: $json"
note "sockid validate --json: valid true with the claims for db, valid false with a reason for other"

# --- key rotation -----------------------------------------------------------
rot=$("$SOCKID" key rotate --admin-socket "$ADMIN" --json 2>"$ERR") ||
    fail "sockid key rotate exited with status $?: $(cat "$ERR")"
NEW_KID=$(printf '%s' "$rot" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
if d.get("retired_kid") != sys.argv[1] or not d.get("active_kid") or d["active_kid"] == sys.argv[1]:
    sys.exit("expected a new active kid and %s retired, got %r" % (sys.argv[1], d))
print(d["active_kid"])
' "$OLD_KID") || fail "sockid key rotate --json printed: $rot"
note "sockid key rotate: $rot"

fetch db
NEW_TOKEN=$TOKEN
bundle "$D/jwks2.json"
for v in jose pyjwt; do
    accepts "$v" "$D/jwks2.json" "$NEW_TOKEN" db
    [ "$KID" = "$NEW_KID" ] || fail "after the rotation, a new token has kid $KID, expected $NEW_KID"
    accepts "$v" "$D/jwks2.json" "$DB_TOKEN" db
    [ "$KID" = "$OLD_KID" ] || fail "the token from before the rotation has kid $KID, expected $OLD_KID"
    rejects_audience "$v" "$D/jwks2.json" "$OTHER_TOKEN" db
done
"$SOCKID" validate --socket "$SOCK" --audience db "$DB_TOKEN" >"$D/out" 2>"$ERR" ||
    fail "after the rotation, sockid validate refused a token of the retired key: $(cat "$ERR")"
note "after the rotation: new tokens carry $NEW_KID, tokens of the retired key still verify"

# What DESIGN §2 says of the SPIFFE variant of the bundle, shown rather than
# asserted: it is jose's behaviour, not sockid's.
"$SOCKID" bundle --socket "$SOCK" --format spiffe >"$D/spiffe.json" 2>"$ERR" ||
    fail "sockid bundle --format spiffe exited with status $?: $(cat "$ERR")"
if node "$HERE/verify.mjs" "$D/spiffe.json" "$NEW_TOKEN" db >"$D/out" 2>"$ERR"; then
    note "note: jose accepts the bundle with \"use\":\"jwt-svid\""
else
    note "note: jose with the --format spiffe bundle: $(cat "$ERR")"
fi

note PASS
