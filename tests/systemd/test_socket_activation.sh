#!/bin/sh
# Socket activation with a real activator: systemd-socket-activate (Debian's
# systemd package; it needs no systemd as PID 1) creates and listens on both
# sockets, names them with --fdname as FileDescriptorName= would, and execs
# the agent on the first connection with LISTEN_FDS, LISTEN_PID and
# LISTEN_FDNAMES set.
#
#   1. Names in the usual order (workload, admin): an operator creates an
#      entry on the admin socket (that connection starts the agent), a
#      workload fetches a token on the workload socket and the agent
#      validates it; the agent logs that it uses the passed sockets.
#   2. The same with the order reversed (admin first): the agent goes by
#      the names, not by the order.
#   3. A socket with an unknown name: the agent refuses to start, naming it.
#
# In 1 and 2 the agent neither creates nor removes the socket files, nor
# changes them: each file keeps its inode and mode from before the agent
# started until after it stopped (exit 0 on SIGTERM), and nothing appears at
# the paths the agent would have used itself (--socket, --admin-socket and
# its .lock file).
#
# Usage: test_socket_activation.sh AGENT SOCKID IT_PROBE
set -u
[ $# -eq 3 ] || {
    echo "usage: $0 AGENT SOCKID IT_PROBE" >&2
    exit 2
}
AGENT=$1
SOCKID=$2
IT_PROBE=$3
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../integration/lib.sh
. "$HERE/../integration/lib.sh"

ACTIVATE=$(command -v systemd-socket-activate) || {
    echo "SKIP: systemd-socket-activate is missing (Debian package systemd; scripts/deps.sh installs it)"
    exit 77
}
it_setup
unset SOCKID_AGENT_SOCKET SOCKID_ADMIN_SOCKET
D=$IT_TMP
DATA=$D/data
UID_NOW=$(id -u)
# A relative path would be resolved from the agent's point of view, and
# entries name the CLI by the path the kernel reports.
SOCKID=$(cd "$(dirname "$SOCKID")" && pwd -P)/$(basename "$SOCKID")

# systemd-socket-activate hands the program only the variables it is told
# to; the sanitizers' settings must reach the agent.
SANENV=
for v in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; do
    eval "[ -n \"\${$v:-}\" ]" && SANENV="$SANENV -E $v"
done

# activate DIR FDNAMES SOCKET1 SOCKET2: systemd-socket-activate listening on
# the two sockets, ready to exec the agent with the unused paths of DIR as
# its own; sets PID (the activator's, then the agent's: it execs) and LOG.
activate() {
    dir=$1
    names=$2
    LOG=$dir/agent.log
    IT_LOGS="$IT_LOGS $LOG"
    # shellcheck disable=SC2086 # $SANENV is a list of options
    setpriv --pdeathsig KILL -- env --default-signal=INT,TERM \
        "$ACTIVATE" -l "$3" -l "$4" --fdname="$names" $SANENV \
        "$AGENT" --socket "$dir/own.sock" --admin-socket "$dir/own-admin.sock" \
        --data-dir "$DATA" </dev/null >>"$LOG" 2>&1 &
    PID=$!
    IT_AGENTS="$IT_AGENTS $PID"
    i=0
    until [ -S "$3" ] && [ -S "$4" ]; do
        is_running "$PID" || fail "systemd-socket-activate exited: $(cat "$LOG")"
        [ $i -lt 500 ] || fail "systemd-socket-activate did not create $3 and $4 within 10 s"
        sleep_tick
        i=$((i + 1))
    done
}

# ident FILE: inode and mode of FILE.
ident() {
    stat -c '%i %a %F' "$1"
}

# own_paths_absent DIR: the agent created nothing of its own.
own_paths_absent() {
    for f in "$1/own.sock" "$1/own-admin.sock" "$1/own.sock.lock"; do
        [ -e "$f" ] && fail "the socket-activated agent created $f"
    done
    return 0
}

# serve_round DIR WORKLOAD ADMIN: the agent answers on both passed sockets:
# an entry on ADMIN (created when DIR is the first round), a token on
# WORKLOAD, validated by the agent.
serve_round() {
    dir=$1
    wl=$2
    adm=$3
    ID=spiffe://example.org/activated
    if [ ! -d "$DATA" ]; then
        # The first connection starts the agent: give it time to.
        out=$("$SOCKID" entry create --admin-socket "$adm" --timeout 30000 --spiffe-id "$ID" \
            --selector "unix:uid:$UID_NOW" --selector "unix:path:$SOCKID" 2>&1) ||
            fail "sockid entry create on the passed admin socket: $out"
    else
        out=$("$SOCKID" entry list --admin-socket "$adm" --timeout 30000 2>&1) ||
            fail "sockid entry list on the passed admin socket: $out"
        printf '%s\n' "$out" | grep -q "$ID" || fail "the entry of the first round is not listed: $out"
    fi
    TOKEN=$("$SOCKID" fetch --socket "$wl" --timeout 30000 --audience db 2>"$dir/err") ||
        fail "sockid fetch on the passed workload socket: $(cat "$dir/err")"
    out=$("$SOCKID" validate --socket "$wl" --audience db "$TOKEN" 2>&1) ||
        fail "sockid validate on the passed workload socket: $out"
    [ "$out" = "$ID" ] || fail "sockid validate printed '$out', expected $ID"
    # The admin API is not on the workload socket, nor the workload API on
    # the admin socket: each fd went where its name says.
    "$SOCKID" entry list --admin-socket "$wl" >/dev/null 2>&1 &&
        fail "the workload socket $wl answered an admin request"
    "$SOCKID" whoami --socket "$adm" >/dev/null 2>&1 &&
        fail "the admin socket $adm answered a workload request"
    [ "$(cat /proc/"$PID"/comm)" = sockid-agent ] ||
        fail "pid $PID is $(cat /proc/"$PID"/comm), not the agent systemd-socket-activate should have become"
    grep -q 'using the sockets passed by the service manager' "$LOG" ||
        fail "the agent did not log that it uses the passed sockets"
    own_paths_absent "$dir"
}

# stop_round DIR WORKLOAD ADMIN BEFORE_WL BEFORE_ADM: SIGTERM; exit 0; the
# socket files untouched.
stop_round() {
    kill -TERM "$PID"
    agent_wait_exit "$PID"
    [ "$EXIT_STATUS" = 0 ] || fail "the socket-activated agent exited with status $EXIT_STATUS on SIGTERM"
    [ -S "$2" ] || fail "the agent removed the passed workload socket $2"
    [ -S "$3" ] || fail "the agent removed the passed admin socket $3"
    [ "$(ident "$2")" = "$4" ] ||
        fail "the workload socket $2 changed while the agent ran: '$4' before, '$(ident "$2")' after"
    [ "$(ident "$3")" = "$5" ] ||
        fail "the admin socket $3 changed while the agent ran: '$5' before, '$(ident "$3")' after"
    own_paths_absent "$1"
}

# --- 1: workload, admin ---------------------------------------------------------
R=$D/r1
mkdir "$R"
activate "$R" workload:admin "$R/agent.sock" "$R/admin.sock"
[ "$(cat /proc/"$PID"/comm)" = systemd-socket- ] ||
    note "(pid $PID is already $(cat /proc/"$PID"/comm))"
wl0=$(ident "$R/agent.sock")
adm0=$(ident "$R/admin.sock")
serve_round "$R" "$R/agent.sock" "$R/admin.sock"
note "round 1 (--fdname=workload:admin): entry created on the admin fd, token fetched and validated on the workload fd"
stop_round "$R" "$R/agent.sock" "$R/admin.sock" "$wl0" "$adm0"
note "round 1: the agent stopped with status 0; both socket files kept their inode and mode ($wl0 / $adm0)"

# --- 2: admin, workload -------------------------------------------------------
R=$D/r2
mkdir "$R"
activate "$R" admin:workload "$R/admin.sock" "$R/agent.sock"
wl0=$(ident "$R/agent.sock")
adm0=$(ident "$R/admin.sock")
serve_round "$R" "$R/agent.sock" "$R/admin.sock"
stop_round "$R" "$R/agent.sock" "$R/admin.sock" "$wl0" "$adm0"
note "round 2 (--fdname=admin:workload): the agent went by the names, not the order"

# --- 3: an unknown name ---------------------------------------------------------
R=$D/r3
mkdir "$R"
activate "$R" workload:bogus "$R/agent.sock" "$R/bogus.sock"
"$IT_PROBE" connect "$R/agent.sock" >/dev/null 2>&1 # starts the agent
agent_wait_exit "$PID"
[ "$EXIT_STATUS" = 1 ] || fail "with a socket named 'bogus' the agent exited with status $EXIT_STATUS, expected 1"
grep -q "named 'bogus'" "$LOG" || fail "the agent's refusal does not name the socket 'bogus': $(cat "$LOG")"
note "round 3: a socket named 'bogus' is refused: $(grep "named 'bogus'" "$LOG" | sed 's/.*error: //')"

echo "PASS: socket-activated by systemd-socket-activate, the agent serves both named sockets and leaves their files alone"
