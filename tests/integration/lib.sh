# Helpers for the shell integration tests (POSIX sh). Source it, then call
# it_setup. Every agent started with agent_start is killed on any exit, and
# the temporary directory is removed; on failure the agents' logs are shown.
#
# Agents run under setpriv --pdeathsig KILL, so a test killed from outside
# (a ctest timeout) leaves none behind, and under env --default-signal=INT
# because a shell starts background jobs with SIGINT ignored, and an ignored
# signal never reaches the agent's signalfd.

IT_TMP=
IT_AGENTS=
IT_LOGS=
IT_FAILED=0
IT_PROBE=${IT_PROBE:-}

fail() {
    echo "FAIL: $*" >&2
    IT_FAILED=1
    exit 1
}

note() {
    echo "$*"
}

skip_note() {
    echo "SKIP (part): $*"
}

it_cleanup() {
    for pid in $IT_AGENTS; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    if [ "$IT_FAILED" != 0 ]; then
        for log in $IT_LOGS; do
            if [ -f "$log" ]; then
                echo "---- $log ----" >&2
                cat "$log" >&2
                echo "---- end of $log ----" >&2
            fi
        done
    fi
    [ -n "$IT_TMP" ] && rm -rf "$IT_TMP"
}

it_on_exit() {
    status=$?
    [ "$status" != 0 ] && IT_FAILED=1
    it_cleanup
    exit "$status"
}

it_setup() {
    IT_TMP=$(mktemp -d /tmp/sockid-it.XXXXXX) || fail "mktemp failed"
    chmod 0755 "$IT_TMP" || fail "chmod $IT_TMP failed"
    trap it_on_exit EXIT
    trap 'exit 1' INT TERM HUP
    # A reader that went away (| head) must not stop the cleanup halfway.
    trap '' PIPE
}

# sleep_tick: one polling step of a deadline loop.
sleep_tick() {
    sleep 0.02
}

# is_running PID: alive and not a zombie.
is_running() {
    [ -r "/proc/$1/stat" ] || return 1
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
    [ -n "$state" ] && [ "$state" != Z ]
}

# agent_start NAME SOCKET [ARGS...]: starts the agent in the background with
# its data in $IT_TMP/data-NAME and its stderr and stdout in $IT_TMP/NAME.log;
# sets AGENT_PID and AGENT_LOG. Does not wait.
agent_start() {
    name=$1
    sock=$2
    shift 2
    AGENT_LOG="$IT_TMP/$name.log"
    IT_LOGS="$IT_LOGS $AGENT_LOG"
    setpriv --pdeathsig KILL -- env --default-signal=INT,TERM \
        "$AGENT" --socket "$sock" --admin-socket "${sock%.sock}-admin.sock" \
        --data-dir "$IT_TMP/data-$name" "$@" \
        </dev/null >>"$AGENT_LOG" 2>&1 &
    AGENT_PID=$!
    IT_AGENTS="$IT_AGENTS $AGENT_PID"
}

# agent_wait_ready PID SOCKET: until a connection is accepted (10 s).
agent_wait_ready() {
    i=0
    while [ $i -lt 500 ]; do
        is_running "$1" || {
            wait "$1"
            fail "the agent (pid $1) exited during startup with status $?"
        }
        "$IT_PROBE" connect "$2" 2>/dev/null && return 0
        sleep_tick
        i=$((i + 1))
    done
    fail "the agent (pid $1) did not accept connections on $2 within 10 s"
}

# agent_wait_exit PID: waits (10 s) for the agent to exit; sets EXIT_STATUS.
agent_wait_exit() {
    i=0
    while is_running "$1"; do
        [ $i -ge 500 ] && fail "the agent (pid $1) did not exit within 10 s"
        sleep_tick
        i=$((i + 1))
    done
    wait "$1"
    EXIT_STATUS=$?
}

# agent_run_fg NAME SOCKET [ARGS...]: runs an agent that is expected to exit
# by itself (refusing to start); sets EXIT_STATUS and AGENT_LOG. A refusal
# that never comes fails the test after 10 s rather than hanging.
agent_run_fg() {
    agent_start "$@"
    agent_wait_exit "$AGENT_PID"
}

# agent_stop PID SOCKET SIGNAL: the agent must exit 0 and remove its socket.
# The signal is sent by it_probe with an answered connection open, so that no
# client's close arrives in the same instant (see it_probe.c).
agent_stop() {
    "$IT_PROBE" stop "$2" "$1" "$3" 2>"$IT_TMP/stop.err" ||
        fail "stopping the agent (pid $1) with SIG$3: $(cat "$IT_TMP/stop.err")"
    agent_wait_exit "$1"
    [ "$EXIT_STATUS" = 0 ] || fail "after SIG$3 the agent exited with status $EXIT_STATUS, expected 0"
    if [ -e "$2" ] || [ -L "$2" ]; then
        fail "after SIG$3 the agent left its socket $2 behind"
    fi
}

# expect_served SOCKET WHAT: a WhoAmI on SOCKET gets a WhoAmI answer.
expect_served() {
    out=$("$IT_PROBE" whoami "$1" 2>&1) || fail "$2: the agent on $1 did not serve a WhoAmI: $out"
}

# admin_wait_ready PID ADMIN_SOCKET: until the admin socket accepts a
# connection (10 s). The agent opens it just after the workload socket, so a
# test that uses it waits for it too rather than race the agent's startup.
admin_wait_ready() {
    i=0
    while [ $i -lt 500 ]; do
        is_running "$1" || {
            wait "$1"
            fail "the agent (pid $1) exited during startup with status $?"
        }
        "$IT_PROBE" connect "$2" 2>/dev/null && return 0
        sleep_tick
        i=$((i + 1))
    done
    fail "the agent (pid $1) did not accept connections on its admin socket $2 within 10 s"
}
