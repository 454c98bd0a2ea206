#!/bin/sh
# The examples as installed (${docdir}/examples of the install_prefix
# fixture), run the way their comments tell a user to, against the installed
# agent:
#
#   - agent.conf: the agent starts with it as it is (every key commented
#     out), and with every [agent] and [attestor.unix] key uncommented,
#     which proves the defaults it shows are values the agent accepts;
#   - workload/fetch.c: built with its own Makefile, pkg-config finding the
#     installed sockid.pc; run, it gets a token and prints its expiry;
#   - workload/fetch.sh: with the installed CLI, prints a token, writes one
#     to a file of mode 0600, and passes a refusal on as exit status 1;
#   - verify/verify.py (PyJWT) and verify/verify.mjs (node's jose): accept a
#     token with the JWKS of 'sockid bundle' and its audience, and reject it
#     for another audience, another trust domain, and with a flipped
#     signature.
#
# Needs the install_prefix fixture, and the interop_setup fixture for jose
# (installed into SOCKID_NODE_DIR) and Debian's python3-jwt.
set -u
for v in SOCKID_SRC SOCKID_PREFIX SOCKID_BINDIR SOCKID_SBINDIR SOCKID_LIBDIR SOCKID_DOCDIR \
    SOCKID_CC SOCKID_NODE_DIR; do
    eval "[ -n \"\${$v:-}\" ]" || {
        echo "test_examples.sh: $v is not set; run it through ctest" >&2
        exit 2
    }
done
SAN=${SOCKID_SANITIZE_FLAGS:-}
# shellcheck source=../integration/lib.sh
. "$SOCKID_SRC/tests/integration/lib.sh"
it_setup
unset SOCKID_AGENT_SOCKET SOCKID_ADMIN_SOCKET

case "$SOCKID_LIBDIR$SOCKID_DOCDIR" in
/*)
    echo "SKIP: absolute install directories are not moved by 'cmake --install --prefix'"
    exit 77
    ;;
esac
P=$SOCKID_PREFIX
EX=$P/$SOCKID_DOCDIR/examples
LIB=$P/$SOCKID_LIBDIR
[ -d "$EX" ] || fail "no examples in $EX: run the install_prefix test first"
D=$IT_TMP
PY=/usr/bin/python3
SOCKID=$P/$SOCKID_BINDIR/sockid
SOCK=$D/agent.sock
ADMIN=$D/admin.sock
AUD=https://db.example.org

# start_agent CONFIG: the installed agent on $SOCK and $ADMIN; sets PID.
start_agent() {
    LOG=$D/agent-$(basename "$1").log
    IT_LOGS="$IT_LOGS $LOG"
    setpriv --pdeathsig KILL -- env --default-signal=INT,TERM \
        "$P/$SOCKID_SBINDIR/sockid-agent" --config "$1" --socket "$SOCK" --admin-socket "$ADMIN" \
        --data-dir "$D/data" </dev/null >>"$LOG" 2>&1 &
    PID=$!
    IT_AGENTS="$IT_AGENTS $PID"
    i=0
    until "$SOCKID" health --socket "$SOCK" --timeout 1000 >/dev/null 2>&1 &&
        "$SOCKID" status --admin-socket "$ADMIN" --timeout 1000 >/dev/null 2>&1; do
        is_running "$PID" || fail "the agent exited during startup with the config $1: $(tail -n 3 "$LOG")"
        [ $i -lt 1000 ] || fail "the agent did not answer within 20 s with the config $1"
        sleep_tick
        i=$((i + 1))
    done
}

stop_agent() {
    kill -TERM "$PID"
    agent_wait_exit "$PID"
    [ "$EXIT_STATUS" = 0 ] || fail "the agent exited with status $EXIT_STATUS on SIGTERM"
}

# --- agent.conf ---------------------------------------------------------------
# Uncomment every ';key = value' line up to the first commented-out section
# (those sections name plugins that may not be installed), except plugin_dir,
# whose example path is Debian's.
awk '/^;\[/ { done = 1 } !done && /^;[a-z_]+ *=/ && !/^;plugin_dir/ { sub(/^;/, "") } { print }' \
    "$EX/agent.conf" >"$D/agent-uncommented.conf"
n=$(grep -cE '^[a-z_]+ *=' "$D/agent-uncommented.conf")
[ "$n" -ge 20 ] || fail "only $n keys uncommented in the example agent.conf"
start_agent "$D/agent-uncommented.conf"
stop_agent
note "examples/agent.conf: the agent accepts all $n keys uncommented, with their defaults"
start_agent "$EX/agent.conf"
note "examples/agent.conf: the agent runs with it as installed"

# --- workload/fetch.c -----------------------------------------------------------
cp -r "$EX/workload" "$D/workload" || fail "cannot copy $EX/workload"
(
    cd "$D/workload" &&
        PKG_CONFIG_PATH=$LIB/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH} \
            make CC="$SOCKID_CC" CFLAGS="-O2 -g -Wall -Wextra -Werror $SAN" \
            LDFLAGS="-Wl,-rpath,$LIB $SAN"
) >"$D/make.log" 2>&1 || fail "building the C example with its Makefile failed:
$(cat "$D/make.log")"
note "workload/fetch.c: built with its Makefile against the installed sockid.pc"

FETCH_ID=spiffe://example.org/examples/fetch
out=$("$SOCKID" entry create --admin-socket "$ADMIN" --spiffe-id "$FETCH_ID" \
    --selector "unix:uid:$(id -u)" --selector "unix:path:$D/workload/fetch" --ttl 10m 2>&1) ||
    fail "sockid entry create for the C example: $out"
out=$("$D/workload/fetch" -s "$SOCK" "$AUD" 2>&1) || fail "the C example exited with status $?: $out"
note "workload/fetch: $out"
printf '%s\n' "$out" | grep -Eq "^$FETCH_ID expires [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z \(in (599|600) s\)\$" ||
    fail "the C example printed '$out', expected '$FETCH_ID expires <UTC time> (in 600 s)'"
SOCKID_AGENT_SOCKET=$D/nowhere.sock "$D/workload/fetch" "$AUD" >/dev/null 2>&1
status=$?
[ "$status" = 3 ] || fail "the C example exited $status with no agent, expected 3"

# --- workload/fetch.sh ----------------------------------------------------------
SH_ID=spiffe://example.org/examples/shell
out=$("$SOCKID" entry create --admin-socket "$ADMIN" --spiffe-id "$SH_ID" \
    --selector "unix:uid:$(id -u)" --selector "unix:path:$SOCKID" --audience "$AUD" 2>&1) ||
    fail "sockid entry create for the shell example: $out"
export SOCKID SOCKID_AGENT_SOCKET="$SOCK"
TOKEN=$(sh "$D/workload/fetch.sh" "$AUD" 2>"$D/fetch.err") ||
    fail "fetch.sh exited with status $?: $(cat "$D/fetch.err")"
note "workload/fetch.sh: $(cat "$D/fetch.err")"
printf '%s' "$TOKEN" | grep -Eq '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' ||
    fail "fetch.sh printed no compact JWT: $TOKEN"
grep -q "^fetch.sh: $SH_ID for $AUD, expires " "$D/fetch.err" ||
    fail "fetch.sh did not say whose token it is: $(cat "$D/fetch.err")"
sh "$D/workload/fetch.sh" -o "$D/token" "$AUD" 2>"$D/fetch.err" ||
    fail "fetch.sh -o exited with status $?: $(cat "$D/fetch.err")"
[ "$(stat -c %a "$D/token")" = 600 ] || fail "fetch.sh -o wrote $D/token with mode $(stat -c %a "$D/token")"
[ "$(cat "$D/token")" = "$TOKEN" ] || fail "fetch.sh -o wrote another token than the one the agent caches"
# The entry allows $AUD only: another audience is refused, and fetch.sh
# passes sockid's status 1 on.
sh "$D/workload/fetch.sh" https://other.example.org >/dev/null 2>"$D/fetch.err"
status=$?
[ "$status" = 1 ] || fail "fetch.sh for an audience the entry does not allow exited $status, expected 1: $(cat "$D/fetch.err")"
unset SOCKID_AGENT_SOCKET

# --- verify/verify.py and verify/verify.mjs -----------------------------------
"$SOCKID" bundle --socket "$SOCK" >"$D/jwks.json" 2>"$D/err" || fail "sockid bundle: $(cat "$D/err")"
# The same token with the first character of its signature changed (the
# last one may carry only padding bits, which decoders ignore).
sig=${TOKEN##*.}
first=$(printf '%s' "$sig" | cut -c1)
[ "$first" = A ] && first=B || first=A
TAMPERED=${TOKEN%.*}.$first$(printf '%s' "$sig" | cut -c2-)

[ -x "$PY" ] || fail "$PY is missing (Debian package python3, with python3-jwt)"
NODE_DIR=$(cd "$SOCKID_NODE_DIR" 2>/dev/null && pwd) ||
    fail "no $SOCKID_NODE_DIR: run the interop_setup test (it installs node's jose)"
[ -d "$NODE_DIR/node_modules/jose" ] || fail "node's jose is not in $NODE_DIR: run the interop_setup test"
# As a user would: verify.mjs next to a node_modules holding jose.
mkdir "$D/verify" && cp "$EX/verify/verify.mjs" "$EX/verify/package.json" "$D/verify/" &&
    ln -s "$NODE_DIR/node_modules" "$D/verify/node_modules" || fail "cannot set up $D/verify"

# check NAME EXPECTED_STATUS WHY ARGS...: the verifier NAME exits as expected.
check() {
    name=$1
    want=$2
    why=$3
    shift 3
    case $name in
    pyjwt) set -- "$PY" "$EX/verify/verify.py" "$@" ;;
    jose) set -- node "$D/verify/verify.mjs" "$@" ;;
    esac
    "$@" >"$D/out" 2>"$D/err"
    got=$?
    [ "$got" = "$want" ] || fail "$name, $why: exit status $got, expected $want: $(cat "$D/out" "$D/err")"
}

for v in pyjwt jose; do
    check "$v" 0 "a valid token" --jwks "$D/jwks.json" --audience "$AUD" --trust-domain example.org \
        --spiffe-id "$SH_ID" "$TOKEN"
    grep -q "\"sub\": *\"$SH_ID\"" "$D/out" || fail "$v printed no claims with sub $SH_ID: $(cat "$D/out")"
    note "verify ($v) accepts: $(cat "$D/out")"
    printf '%s\n' "$TOKEN" >"$D/token.in"
    check "$v" 0 "the token on stdin" --jwks "$D/jwks.json" --audience "$AUD" - <"$D/token.in"
    check "$v" 1 "another audience" --jwks "$D/jwks.json" --audience https://other.example.org "$TOKEN"
    note "verify ($v) rejects another audience: $(cat "$D/err")"
    check "$v" 1 "another trust domain" --jwks "$D/jwks.json" --audience "$AUD" --trust-domain other.org "$TOKEN"
    check "$v" 1 "a tampered signature" --jwks "$D/jwks.json" --audience "$AUD" "$TAMPERED"
    check "$v" 2 "no --audience" --jwks "$D/jwks.json" "$TOKEN"
done

stop_agent
echo "PASS: the installed examples build, run and verify against a live agent"
