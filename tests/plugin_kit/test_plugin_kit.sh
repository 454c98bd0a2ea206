#!/bin/sh
# The plugin author's kit, used as an author uses it: the project installed
# into a temporary prefix; examples/attestors/ns copied out of the source
# tree and built from its own directory with its Makefile, finding
# <sockid/attestor.h> through the installed sockid-attestor.pc; the plugin
# exporting only sockid_attestor; passing its own dlopen test (make check);
# installed with 'make install' into the
# pc file's attestordir, next to the built-in plugins; and the installed
# agent, which looks there by default, loading it:
#
#  - 'sockid whoami --json' shows ns:TYPE:INODE for each namespace, equal to
#    `stat -L -c %i /proc/$$/ns/TYPE` of this shell, and, as root, another
#    ns:net for a process in a network namespace of its own;
#  - [attestor.ns] namespaces = net, pid reports those two only;
#  - an unknown key in [attestor.ns], and a plugin file that group or others
#    may write, stop the agent at startup with a message saying so.
#
# In a sanitizer build the plugin is built with the same sanitizers (and
# without -z defs: the agent provides the sanitizer runtime).
#
# Usage: test_plugin_kit.sh CMAKE BUILD_DIR EXAMPLE_DIR CC SANITIZE IT_PROBE BINDIR SBINDIR LIBDIR
set -u
[ $# -eq 9 ] || {
    echo "usage: $0 CMAKE BUILD_DIR EXAMPLE_DIR CC SANITIZE IT_PROBE BINDIR SBINDIR LIBDIR" >&2
    exit 2
}
CMAKE=$1
BUILD=$2
EXAMPLE=$3
CC=$4
SANITIZE=$5
IT_PROBE=$6
BINDIR=$7
SBINDIR=$8
LIBDIR=$9
. "$(dirname "$0")/../integration/lib.sh"

PY=/usr/bin/python3

skip() {
    echo "SKIP: $*"
    exit 77
}

for tool in make pkg-config nm "$CC"; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool not found; the kit is built with make, pkg-config and $CC, and checked with nm"
done
[ -x "$PY" ] || skip "$PY not found"
for dir in "$BINDIR" "$SBINDIR" "$LIBDIR"; do
    case $dir in
    /*) skip "the build was configured with an absolute install directory ($dir), which 'cmake --install --prefix' would not move into a temporary prefix" ;;
    esac
done

# Directories the agent accepts plugins from: not group- or other-writable.
umask 022
it_setup
ERR=$IT_TMP/stderr
PREFIX=$IT_TMP/prefix
SOCK=$IT_TMP/agent.sock

# --- install the project, as a packager or an operator would ------------------

"$CMAKE" --install "$BUILD" --prefix "$PREFIX" >"$IT_TMP/install.log" 2>&1 ||
    fail "cmake --install $BUILD --prefix $PREFIX failed:
$(cat "$IT_TMP/install.log")"
PKG_CONFIG_PATH=$PREFIX/$LIBDIR/pkgconfig
[ -f "$PKG_CONFIG_PATH/sockid-attestor.pc" ] || fail "the install has no $PKG_CONFIG_PATH/sockid-attestor.pc:
$(cat "$IT_TMP/install.log")"
export PKG_CONFIG_PATH
AGENT=$PREFIX/$SBINDIR/sockid-agent
SOCKID=$PREFIX/$BINDIR/sockid
PLUGINS=$PREFIX/$LIBDIR/sockid/attestors
[ -x "$AGENT" ] && [ -x "$SOCKID" ] || fail "the install has no $AGENT or $SOCKID"
[ -f "$PLUGINS/unix.so" ] || fail "the install has no built-in plugins in $PLUGINS"

# What the pc file tells an author: the installed header, and where plugins go.
cflags=$(pkg-config --cflags sockid-attestor | sed "s/[[:space:]]*$//") || fail "pkg-config --cflags sockid-attestor failed"
[ "$cflags" = "-I$PREFIX/include" ] || fail "pkg-config --cflags sockid-attestor says '$cflags', expected -I$PREFIX/include"
[ -f "$PREFIX/include/sockid/attestor.h" ] || fail "no $PREFIX/include/sockid/attestor.h installed"
adir=$(pkg-config --variable=attestordir sockid-attestor) || fail "pkg-config --variable=attestordir failed"
[ "$adir" = "$PLUGINS" ] || fail "pkg-config --variable=attestordir sockid-attestor says '$adir', expected $PLUGINS, where the agent looks"
note "installed into $PREFIX; sockid-attestor.pc: Cflags $cflags, attestordir $adir"

# --- build the example from its own directory, as its author would -----------

SRC=$IT_TMP/src/ns
mkdir -p "$IT_TMP/src" && cp -R "$EXAMPLE" "$SRC" || fail "cannot copy $EXAMPLE to $SRC"
(cd "$SRC" && make clean) >"$IT_TMP/make.log" 2>&1 || fail "make clean failed: $(cat "$IT_TMP/make.log")"
if [ "$SANITIZE" = 1 ]; then
    set -- CC="$CC" NO_UNDEFINED= \
        CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    note "a sanitizer build: the plugin is built with -fsanitize=address,undefined too"
else
    set -- CC="$CC"
fi
(cd "$SRC" && make "$@") >"$IT_TMP/make.log" 2>&1 || fail "make in $SRC failed:
$(cat "$IT_TMP/make.log")"
grep -q -- "-I$PREFIX/include" "$IT_TMP/make.log" ||
    fail "make did not compile with the installed header's -I$PREFIX/include:
$(cat "$IT_TMP/make.log")"
note "built: $(grep -- ' -o ns.so ' "$IT_TMP/make.log")"

(cd "$SRC" && make "$@" check) >"$IT_TMP/check.log" 2>&1 || fail "make check (test_ns, the example's own dlopen test) failed:
$(cat "$IT_TMP/check.log")"
note "make check: $(tail -n 1 "$IT_TMP/check.log")"

exports=$(nm -D --defined-only "$SRC/ns.so" | awk '{ print $NF }')
[ "$exports" = sockid_attestor ] || fail "ns.so exports more than sockid_attestor: $(echo $exports)"
(cd "$SRC" && make check-exports) >"$ERR" 2>&1 || fail "make check-exports: $(cat "$ERR")"
note "ns.so exports only sockid_attestor"

(cd "$SRC" && make "$@" install) >"$IT_TMP/install-ns.log" 2>&1 ||
    fail "make install failed: $(cat "$IT_TMP/install-ns.log")"
[ -f "$PLUGINS/ns.so" ] || fail "make install put no ns.so in $PLUGINS"
mode=$(stat -c '%a %u' "$PLUGINS/ns.so")
[ "$mode" = "644 $(id -u)" ] || fail "the installed ns.so has mode and owner '$mode', expected '644 $(id -u)'"
note "make install: $PLUGINS/ns.so, mode 0644"

# --- the agent loads it --------------------------------------------------------

# whoami_ns OUT [PREFIX...]: 'sockid whoami --json' (run under PREFIX) into OUT.
whoami_ns() {
    out=$1
    shift
    "$@" "$SOCKID" whoami --json --socket "$SOCK" >"$out" 2>"$ERR" ||
        fail "sockid whoami --json exited with status $?: $(cat "$ERR")"
}

# check_ns JSON TYPE:INODE...: the ns: selectors in JSON are exactly these.
check_ns() {
    json=$1
    shift
    $PY -c '
import json, sys
d = json.load(open(sys.argv[1]))
want = sorted("ns:" + a for a in sys.argv[2:])
got = sorted(s for s in d["selectors"] if s.startswith("ns:"))
print("\n".join("    " + s for s in got))
if got != want:
    sys.exit("the ns: selectors are %r, expected %r" % (got, want))
if not any(s.startswith("unix:uid:") for s in d["selectors"]):
    sys.exit("the built-in unix attestor gave nothing: %r" % d["selectors"])
' "$json" "$@" || fail "sockid whoami --json: see above; output was: $(cat "$json")"
}

# ns_of PID TYPE...: TYPE:INODE for each TYPE this kernel has.
ns_of() {
    pid=$1
    shift
    for t in "$@"; do
        [ -e "/proc/$pid/ns/$t" ] && echo "$t:$(stat -L -c %i "/proc/$pid/ns/$t")"
    done
}
ALL="pid mnt net user uts ipc cgroup time"

agent_start all "$SOCK"
PID=$AGENT_PID
agent_wait_ready "$PID" "$SOCK"
grep -q "attestor ns loaded from $PLUGINS" "$AGENT_LOG" || fail "the agent did not say it loaded ns from $PLUGINS:
$(cat "$AGENT_LOG")"
whoami_ns "$IT_TMP/all.json"
note "the installed agent, no config: this shell's namespaces"
# shellcheck disable=SC2046
check_ns "$IT_TMP/all.json" $(ns_of $$ $ALL)
net=$(stat -L -c %i /proc/self/ns/net)
grep -q "\"ns:net:$net\"" "$IT_TMP/all.json" || fail "no ns:net:$net (stat -L -c %i /proc/self/ns/net) in $(cat "$IT_TMP/all.json")"
note "ns:net:$net is this shell's network namespace"

# Another network namespace: the plugin reads the peer, not the agent.
if unshare --net true 2>/dev/null; then
    whoami_ns "$IT_TMP/netns.json" unshare --net
    other=$($PY -c '
import json, sys
print(" ".join(s[len("ns:net:"):] for s in json.load(open(sys.argv[1]))["selectors"]
               if s.startswith("ns:net:")))
' "$IT_TMP/netns.json")
    [ -n "$other" ] && [ "$other" != "$net" ] ||
        fail "a process in a network namespace of its own shows ns:net:'$other', expected one other than $net"
    note "a process in a network namespace of its own: ns:net:$other"
else
    skip_note "another network namespace (unshare --net needs root here)"
fi
agent_stop "$PID" "$SOCK" TERM

# --- config: [attestor.ns] -------------------------------------------------------

printf '[attestor.ns]\nnamespaces = net, pid\n' >"$IT_TMP/two.conf"
agent_start two "$SOCK" --config "$IT_TMP/two.conf"
PID=$AGENT_PID
agent_wait_ready "$PID" "$SOCK"
whoami_ns "$IT_TMP/two.json"
note "[attestor.ns] namespaces = net, pid:"
# shellcheck disable=SC2046
check_ns "$IT_TMP/two.json" $(ns_of $$ net pid)
agent_stop "$PID" "$SOCK" TERM

printf '[attestor.ns]\nnamespaces = net\ncolour = blue\n' >"$IT_TMP/bad.conf"
agent_run_fg bad "$SOCK" --config "$IT_TMP/bad.conf"
[ "$EXIT_STATUS" != 0 ] || fail "the agent started with an unknown key in [attestor.ns]"
grep -q "unknown key 'colour'" "$AGENT_LOG" || fail "the agent's refusal does not name the unknown key:
$(cat "$AGENT_LOG")"
note "an unknown key stops the agent: $(grep "unknown key" "$AGENT_LOG" | sed 's/.*sockid-agent //')"

# --- the loader's rule on the file ----------------------------------------------

chmod g+w "$PLUGINS/ns.so" || fail "chmod g+w $PLUGINS/ns.so"
agent_run_fg groupw "$SOCK"
[ "$EXIT_STATUS" != 0 ] || fail "the agent loaded a group-writable ns.so"
grep -q "writable by group or others" "$AGENT_LOG" || fail "the agent's refusal of a group-writable plugin does not say why:
$(cat "$AGENT_LOG")"
chmod g-w "$PLUGINS/ns.so"
note "a group-writable ns.so stops the agent: $(grep "writable by group" "$AGENT_LOG" | sed 's/.*sockid-agent //')"
note PASS
