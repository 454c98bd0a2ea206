#!/bin/sh
# Runs sockid-agent under callgrind, for profiling with the bench's own load:
#
#   SOCKID_AGENT=build/sbin/sockid-agent \
#     build/bin/sockid-bench --short --scenario persistent --agent bench/callgrind-agent.sh
#
# Each agent the bench starts writes $SOCKID_CALLGRIND_DIR/callgrind.out.PID
# (default /tmp) when the bench stops it; read it with callgrind_annotate.
# Instruction counts are what to compare on a noisy machine; times are not.
# Valgrind 3.19 cannot read clang 14's DWARF 5: profile a GCC build, or
# configure with -DCMAKE_C_FLAGS=-gdwarf-4.
exec valgrind --tool=callgrind \
    --callgrind-out-file="${SOCKID_CALLGRIND_DIR:-/tmp}/callgrind.out.%p" \
    "${SOCKID_AGENT:?set SOCKID_AGENT to the sockid-agent to profile}" "$@"
