#!/bin/sh
# A shell workload: asks the local sockid agent for an identity token with
# the sockid CLI, says whose it is and when it expires, and hands it on.
#
#   fetch.sh https://db.example.org              # the token on stdout
#   fetch.sh -o /run/web/token https://db...     # into a file (mode 0600)
#   fetch.sh -r -o /run/web/token https://db...  # and keep it fresh
#
# The agent decides who is asking from what the kernel reports about the
# process that connects, here the sockid CLI run by this script: its uid,
# its executable (/usr/bin/sockid), its cgroup (the systemd unit this runs
# in, say). Register an entry for those selectors first ('sockid whoami'
# shows them), e.g. for a service web.service:
#
#   sockid entry create --spiffe-id spiffe://example.org/web \
#       --selector systemd:unit:web.service --selector unix:path:/usr/bin/sockid
#
# Usage: fetch.sh [-o FILE] [-r] [-i SPIFFE_ID] AUDIENCE
#   -o FILE       write the token to FILE (mode 0600, replaced atomically)
#                 rather than to standard output
#   -r            renew: fetch again each time half of the token's lifetime
#                 has passed, until killed (the agent answers with the same
#                 token before that); needs -o
#   -i SPIFFE_ID  which identity, when the process has several
# Environment: SOCKID (the CLI, default: sockid on PATH), and the CLI's own
# SOCKID_AGENT_SOCKET.
# Exit status: sockid fetch's (1 no entry matches, 3 no agent, ...).
set -u

SOCKID=${SOCKID:-sockid}
OUT=
RENEW=false
SPIFFE_ID=

usage() {
    echo "usage: fetch.sh [-o FILE] [-r] [-i SPIFFE_ID] AUDIENCE" >&2
    exit 2
}

while getopts o:ri: opt; do
    case $opt in
    o) OUT=$OPTARG ;;
    r) RENEW=true ;;
    i) SPIFFE_ID=$OPTARG ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || usage
AUDIENCE=$1
if [ "$RENEW" = true ] && [ -z "$OUT" ]; then
    echo "fetch.sh: -r needs -o FILE: a renewed token has to go somewhere" >&2
    exit 2
fi

# fetch_once: sets TOKEN, EXPIRES_AT and SUB, or returns sockid's status.
fetch_once() {
    set -- fetch --json --audience "$AUDIENCE"
    [ -n "$SPIFFE_ID" ] && set -- "$@" --spiffe-id "$SPIFFE_ID"
    json=$("$SOCKID" "$@") || return $?
    # One JSON array of {"spiffe_id","token","expires_at"}; the first object
    # is the identity 'sockid fetch' would print. Tokens are base64url and
    # dots, SPIFFE IDs have no quotes, so sed can take them apart.
    first=$(printf '%s\n' "$json" | sed -n 's/^\[{\([^}]*\)}.*/\1/p')
    TOKEN=$(printf '%s\n' "$first" | sed -n 's/.*"token":"\([A-Za-z0-9_.-]*\)".*/\1/p')
    EXPIRES_AT=$(printf '%s\n' "$first" | sed -n 's/.*"expires_at":\([0-9]*\).*/\1/p')
    SUB=$(printf '%s\n' "$first" | sed -n 's/.*"spiffe_id":"\([^"]*\)".*/\1/p')
    if [ -z "$TOKEN" ] || [ -z "$EXPIRES_AT" ]; then
        echo "fetch.sh: cannot read the answer of sockid fetch --json: $json" >&2
        return 1
    fi
}

# deliver: the token to standard output, or atomically into $OUT.
deliver() {
    if [ -z "$OUT" ]; then
        printf '%s\n' "$TOKEN"
        return
    fi
    tmp="$OUT.tmp.$$"
    (umask 077 && printf '%s\n' "$TOKEN" >"$tmp") && mv -f "$tmp" "$OUT" || {
        rm -f "$tmp"
        echo "fetch.sh: cannot write $OUT" >&2
        exit 1
    }
}

while :; do
    fetch_once
    status=$?
    if [ "$status" = 0 ]; then
        now=$(date +%s)
        when=$(date -u -d "@$EXPIRES_AT" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo "@$EXPIRES_AT")
        echo "fetch.sh: $SUB for $AUDIENCE, expires $when (in $((EXPIRES_AT - now)) s)" >&2
        deliver
        [ "$RENEW" = true ] || exit 0
        wait_s=$(((EXPIRES_AT - now) / 2))
        [ "$wait_s" -ge 1 ] || wait_s=1
    elif [ "$RENEW" = true ] && [ "$status" = 3 ]; then
        # The agent is restarting or busy: the token in $OUT is still good
        # for a while, so try again soon rather than give up.
        wait_s=5
    else
        exit "$status"
    fi
    sleep "$wait_s"
done
