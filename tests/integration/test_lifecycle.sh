#!/bin/sh
# The agent's life as an operator sees it: how it starts, refuses to start,
# and stops, and what it leaves behind.
#
# Usage: test_lifecycle.sh AGENT IT_PROBE
set -u
[ $# -eq 2 ] || {
    echo "usage: $0 AGENT IT_PROBE" >&2
    exit 2
}
AGENT=$1
IT_PROBE=$2
. "$(dirname "$0")/lib.sh"
it_setup

# --- SIGTERM, and the socket's mode whatever the umask ------------------------
S=$IT_TMP/term.sock
old_umask=$(umask)
umask 077
agent_start term "$S"
umask "$old_umask"
A=$AGENT_PID
agent_wait_ready "$A" "$S"
expect_served "$S" "SIGTERM case"
mode=$(stat -c %A "$S")
[ "$mode" = srw-rw-rw- ] || fail "the socket's mode is $mode, expected srw-rw-rw- (0666), even under umask 077"
note "socket mode: $mode (agent started under umask 077)"
agent_stop "$A" "$S" TERM
note "SIGTERM: exit 0, socket removed"

# --- SIGINT ---------------------------------------------------------------------
S=$IT_TMP/int.sock
agent_start int "$S"
A=$AGENT_PID
agent_wait_ready "$A" "$S"
expect_served "$S" "SIGINT case"
agent_stop "$A" "$S" INT
note "SIGINT: exit 0, socket removed"

# --- a second agent on the same socket ----------------------------------------
S=$IT_TMP/shared.sock
agent_start first "$S"
A=$AGENT_PID
agent_wait_ready "$A" "$S"
agent_run_fg second "$S"
[ "$EXIT_STATUS" != 0 ] || fail "a second agent on $S started (exit status 0) while the first runs"
grep -Eiq 'another (sockid-)?agent (is running|already answers)' "$AGENT_LOG" ||
    fail "the second agent's stderr does not say another agent is running: $(cat "$AGENT_LOG")"
note "second agent: exit $EXIT_STATUS: $(grep -Ei 'another' "$AGENT_LOG" | head -n 1)"
is_running "$A" || fail "the first agent died when a second one tried to start"
expect_served "$S" "the first agent, after a second one was refused"
note "the first agent keeps serving"
agent_stop "$A" "$S" TERM

# --- a stale socket left by kill -9 ---------------------------------------------
S=$IT_TMP/stale.sock
agent_start killed "$S"
A=$AGENT_PID
agent_wait_ready "$A" "$S"
kill -KILL "$A"
wait "$A" 2>/dev/null
[ -S "$S" ] || fail "precondition: an agent killed with SIGKILL should leave its socket behind"
agent_start after-stale "$S"
A=$AGENT_PID
agent_wait_ready "$A" "$S"
expect_served "$S" "an agent started over a stale socket"
grep -qi 'stale' "$AGENT_LOG" || fail "the agent did not log that it removed the stale socket $S"
note "stale socket: removed by the next start, which serves ($(grep -i stale "$AGENT_LOG" | head -n 1 | sed 's/^.*: //'))"
agent_stop "$A" "$S" TERM

# --- a regular file at the socket path --------------------------------------------
F=$IT_TMP/not-a-socket
echo "keep me" >"$F"
agent_run_fg regular-file "$F"
[ "$EXIT_STATUS" != 0 ] || fail "the agent started with a regular file at its socket path"
grep -qF "$F" "$AGENT_LOG" || fail "the refusal does not name $F: $(cat "$AGENT_LOG")"
if [ ! -f "$F" ] || [ "$(cat "$F")" != "keep me" ]; then
    fail "the agent removed or changed the regular file $F"
fi
note "regular file at the socket path: exit $EXIT_STATUS, file kept: $(grep -F "$F" "$AGENT_LOG" | head -n 1 | sed 's/^.*: //')"

# --- a config file with an error --------------------------------------------------
S=$IT_TMP/config-error.sock
CONF=$IT_TMP/bad.conf
printf '[agent]\nframe_timeout_ms = soon\n' >"$CONF"
agent_run_fg config-error "$S" --config "$CONF"
[ "$EXIT_STATUS" = 2 ] || fail "a config error gave exit status $EXIT_STATUS, expected 2"
grep -qF "$CONF:2:" "$AGENT_LOG" || fail "the config error does not name $CONF and line 2: $(cat "$AGENT_LOG")"
grep -qF "frame_timeout_ms" "$AGENT_LOG" || fail "the config error does not name the key frame_timeout_ms: $(cat "$AGENT_LOG")"
[ -e "$S" ] && fail "an agent that refused its config created its socket"
note "config error: exit 2: $(head -n 1 "$AGENT_LOG")"

# --- --config naming a missing file ---------------------------------------------
S=$IT_TMP/config-missing.sock
CONF=$IT_TMP/no-such.conf
agent_run_fg config-missing "$S" --config "$CONF"
[ "$EXIT_STATUS" != 0 ] || fail "--config $CONF (missing) gave exit status 0"
grep -qF "$CONF" "$AGENT_LOG" || fail "the error for a missing --config does not name $CONF: $(cat "$AGENT_LOG")"
[ -e "$S" ] && fail "an agent without its config file created its socket"
note "missing --config: exit $EXIT_STATUS: $(head -n 1 "$AGENT_LOG")"

# --- the socket's directory is created ---------------------------------------------
S=$IT_TMP/run/nested/agent.sock
agent_start mkdir "$S"
A=$AGENT_PID
agent_wait_ready "$A" "$S"
[ -d "$IT_TMP/run/nested" ] || fail "the socket directory $IT_TMP/run/nested was not created"
expect_served "$S" "an agent whose socket directory it created"
agent_stop "$A" "$S" TERM
note "missing socket directory: created, agent serves"
note PASS
