#!/bin/sh
# Installs what is missing, builds sockid, starts the agent on its embedded
# defaults in a temporary directory, and walks a workload through it.
set -eu
cd "$(dirname "$0")/.."
. scripts/deps.sh
# shellcheck disable=SC2086
deps_install $SOCKID_DEPS_BUILD

build=${SOCKID_DEMO_BUILD:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSOCKID_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null

dir=$(mktemp -d /tmp/sockid-demo.XXXXXX)
chmod 755 "$dir"
agent_pid=
cleanup() {
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

export SOCKID_AGENT_SOCKET="$dir/agent.sock"
sockid="$build/bin/sockid"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "Start the agent (no config file: built-in defaults, socket in $dir)"
"$build/sbin/sockid-agent" --socket "$dir/agent.sock" --admin-socket "$dir/admin.sock" \
    --data-dir "$dir/data" \
    2>"$dir/agent.log" &
agent_pid=$!
i=0
until "$sockid" health >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$agent_pid" 2>/dev/null; then
        echo "the agent did not start; its log:" >&2
        cat "$dir/agent.log" >&2
        exit 1
    fi
    sleep 0.05
done
run "$sockid" health

step "Ask the agent who we are: it asks the kernel, not us"
run "$sockid" whoami

step "An operator registers which selectors earn which identity"
export SOCKID_ADMIN_SOCKET="$dir/admin.sock"
run "$sockid" entry create --spiffe-id spiffe://example.org/demo \
    --selector "unix:uid:$(id -u)" --selector "unix:path:$(readlink -f "$sockid")" \
    --hint "the demo's own CLI"
run "$sockid" entry list

step "Now the kernel-attested selectors earn an identity"
run "$sockid" whoami

step "Fetch a token for audience 'db'"
printf '$ TOKEN=$(%s fetch --audience db)\n' "$sockid"
TOKEN=$("$sockid" fetch --audience db)
echo "$TOKEN"

step "Its header and claims (base64url-decoded)"
decode() {
    # base64url to base64, padded, then decoded
    printf '%s' "$1" | tr '_-' '/+' | awk '{ n = length($0) % 4; if (n) $0 = $0 substr("===", 1, 4 - n); print }' |
        base64 -d
    echo
}
echo "header: $(decode "$(echo "$TOKEN" | cut -d. -f1)")"
echo "claims: $(decode "$(echo "$TOKEN" | cut -d. -f2)")"

step "Anyone can check it: against the agent, or offline against the bundle (a JWKS)"
run "$sockid" validate --audience db "$TOKEN"
run "$sockid" bundle
printf '$ %s validate --audience other "$TOKEN"   # the wrong audience is refused\n' "$sockid"
"$sockid" validate --audience other "$TOKEN" || echo "(exit status $?: refused, as it should be)"

step "Stop the agent (SIGTERM): it finishes in-flight requests and removes its sockets"
kill -TERM "$agent_pid"
wait "$agent_pid" && status=0 || status=$?
agent_pid=
echo "agent exited with status $status"
[ ! -e "$dir/agent.sock" ] && echo "socket removed"
step "Agent log"
cat "$dir/agent.log"
