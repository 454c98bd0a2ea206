#!/bin/sh
# What 'cmake --install' put in the prefix (the install_prefix fixture), and
# that it works from there with nothing of the build tree:
#
#   - the layout: bin/sockid, sbin/sockid-agent, libsockid with its soname
#     and symlinks, sockid.pc, the two headers, every plugin the build made
#     in ${libdir}/sockid/attestors, the man pages, the examples; and no
#     static archive or test program;
#   - the installed programs resolve libsockid from the prefix, not from the
#     build tree, and libsockid exports only the sockid_* API;
#   - a tiny client (tiny_client.c) builds against the installed header and
#     library with only what pkg-config says about sockid.pc, in strict C99
#     with -Werror;
#   - the installed agent, given no --plugin-dir, finds its plugins in the
#     prefix, and serves that client a token for an entry made with the
#     installed sockid CLI.
#
# In a sanitizer build the installed programs carry the sanitizers, and so
# must the client that links the installed library: it is built with the
# same -fsanitize flags.
#
# Environment (set by CMakeLists.txt): SOCKID_SRC SOCKID_BUILD SOCKID_PREFIX
# SOCKID_{BIN,SBIN,LIB,INCLUDE,MAN,DOC,PLUGIN}DIR SOCKID_VERSION SOCKID_CC
# SOCKID_SANITIZE_FLAGS.
set -u
for v in SOCKID_SRC SOCKID_BUILD SOCKID_PREFIX SOCKID_BINDIR SOCKID_SBINDIR SOCKID_LIBDIR \
    SOCKID_INCLUDEDIR SOCKID_MANDIR SOCKID_DOCDIR SOCKID_PLUGINDIR SOCKID_VERSION SOCKID_CC; do
    eval "[ -n \"\${$v:-}\" ]" || {
        echo "test_install.sh: $v is not set; run it through ctest" >&2
        exit 2
    }
done
SAN=${SOCKID_SANITIZE_FLAGS:-}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../integration/lib.sh
. "$SOCKID_SRC/tests/integration/lib.sh"
it_setup
unset SOCKID_AGENT_SOCKET SOCKID_ADMIN_SOCKET

for d in "$SOCKID_BINDIR" "$SOCKID_SBINDIR" "$SOCKID_LIBDIR" "$SOCKID_INCLUDEDIR" \
    "$SOCKID_MANDIR" "$SOCKID_DOCDIR" "$SOCKID_PLUGINDIR"; do
    case "$d" in
    /*)
        echo "SKIP: the build was configured with an absolute install directory ($d), which" \
            "'cmake --install --prefix' does not move; configure with relative CMAKE_INSTALL_*DIR"
        exit 77
        ;;
    esac
done

P=$SOCKID_PREFIX
[ -d "$P" ] || fail "no prefix $P: run the install_prefix test first"
LIB=$P/$SOCKID_LIBDIR
D=$IT_TMP

# --- layout -------------------------------------------------------------------
need_file() {
    [ -f "$P/$1" ] || fail "cmake --install did not install $1 (looked for $P/$1)"
}
need_exec() {
    need_file "$1"
    [ -x "$P/$1" ] || fail "$P/$1 is not executable"
}

need_exec "$SOCKID_BINDIR/sockid"
need_exec "$SOCKID_SBINDIR/sockid-agent"
need_file "$SOCKID_INCLUDEDIR/sockid/client.h"
need_file "$SOCKID_INCLUDEDIR/sockid/attestor.h"
need_file "$SOCKID_LIBDIR/pkgconfig/sockid.pc"
need_file "$SOCKID_MANDIR/man1/sockid.1"
need_file "$SOCKID_MANDIR/man5/sockid-agent.conf.5"
need_file "$SOCKID_MANDIR/man8/sockid-agent.8"
for f in agent.conf README.md systemd/sockid-agent.service systemd/sockid-agent.socket \
    systemd/sockid-agent-admin.socket systemd/sockid-agent-metrics.socket workload/fetch.c \
    workload/Makefile workload/fetch.sh verify/verify.py verify/verify.mjs verify/package.json; do
    need_file "$SOCKID_DOCDIR/examples/$f"
done
if [ -f "$SOCKID_SRC/examples/attestors/ns/ns.c" ]; then
    for f in ns.c ns.map Makefile README.md; do
        need_file "$SOCKID_DOCDIR/examples/attestors/ns/$f"
    done
fi
note "layout: programs, headers, sockid.pc, man pages and examples are in place"

# The library: the real file, the soname link, the development link.
real=libsockid.so.$SOCKID_VERSION
[ -f "$LIB/$real" ] && [ ! -L "$LIB/$real" ] || fail "$LIB/$real is missing or not a regular file"
[ -L "$LIB/libsockid.so.0" ] && [ "$(readlink "$LIB/libsockid.so.0")" = "$real" ] ||
    fail "$LIB/libsockid.so.0 is not a symbolic link to $real"
[ -L "$LIB/libsockid.so" ] && [ "$(readlink "$LIB/libsockid.so")" = libsockid.so.0 ] ||
    fail "$LIB/libsockid.so is not a symbolic link to libsockid.so.0"
if command -v readelf >/dev/null 2>&1; then
    soname=$(readelf -d "$LIB/$real" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
    [ "$soname" = libsockid.so.0 ] || fail "the SONAME of $real is '$soname', expected libsockid.so.0"
    # The ABI is <sockid/client.h>: nothing else may be exported (protobuf-c
    # and the framing code are linked in, and must stay local).
    other=$(nm -D --defined-only "$LIB/$real" | awk '$2 ~ /^[TDBRVWi]$/ { print $3 }' |
        grep -v '^sockid_' | grep -v '^LIBSOCKID' | head -n 5)
    [ -z "$other" ] || fail "libsockid exports symbols outside its API: $other"
    note "libsockid: $real, soname libsockid.so.0, links in place, exports only sockid_*"
else
    skip_note "readelf is missing: soname and exports not checked"
fi

# Plugins: every one the build made, installed, and not writable by others
# (the agent would refuse it).
n=0
for built in "$SOCKID_BUILD/$SOCKID_PLUGINDIR"/*.so; do
    [ -f "$built" ] || continue
    name=$(basename "$built")
    n=$((n + 1))
    f=$P/$SOCKID_PLUGINDIR/$name
    [ -f "$f" ] || fail "the plugin $name is in the build tree but was not installed to $P/$SOCKID_PLUGINDIR"
    perm=$(stat -c %a "$f")
    case "$perm" in
    *[2367]? | *[2367]) fail "the installed plugin $f has mode $perm: writable by group or others" ;;
    esac
done
[ "$n" -ge 1 ] || fail "no plugins in the build tree's $SOCKID_BUILD/$SOCKID_PLUGINDIR"
[ -f "$P/$SOCKID_PLUGINDIR/unix.so" ] || fail "the unix plugin is not installed"
note "plugins: all $n installed in $SOCKID_PLUGINDIR: $(cd "$P/$SOCKID_PLUGINDIR" && echo *.so)"

# Nothing that belongs to the build only.
leaks=$(find "$P" -name '*.a' -print | head -n 5)
leaks="$leaks$(find "$P/$SOCKID_BINDIR" "$P/$SOCKID_SBINDIR" "$LIB" \
    \( -name 'test_*' -o -name 'it_*' -o -name 'fuzz_*' \) -print | head -n 5)"
[ -z "$leaks" ] || fail "cmake --install installed build-only files: $leaks"

# --- the installed programs use the installed library -------------------------
lib_of() {
    l=$(ldd "$1" 2>/dev/null | sed -n 's/^[[:space:]]*libsockid\.so\.0 => \([^ ]*\).*/\1/p')
    [ -n "$l" ] && realpath -s "$l"
}
got=$(lib_of "$P/$SOCKID_BINDIR/sockid")
[ "$got" = "$LIB/libsockid.so.0" ] ||
    fail "the installed sockid loads libsockid from '$got', not from the prefix ($LIB)"
v=$("$P/$SOCKID_BINDIR/sockid" --version 2>&1) || fail "installed sockid --version: $v"
[ "$v" = "sockid $SOCKID_VERSION" ] || fail "installed sockid --version printed '$v'"
v=$("$P/$SOCKID_SBINDIR/sockid-agent" --version 2>&1) || fail "installed sockid-agent --version: $v"
[ "$v" = "sockid-agent $SOCKID_VERSION" ] || fail "installed sockid-agent --version printed '$v'"

# --- pkg-config -----------------------------------------------------------------
PKG_CONFIG_PATH=$LIB/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_PATH
command -v pkg-config >/dev/null 2>&1 || fail "pkg-config is missing (Debian package pkgconf)"
v=$(pkg-config --modversion sockid 2>&1) || fail "pkg-config --modversion sockid: $v"
[ "$v" = "$SOCKID_VERSION" ] || fail "sockid.pc says version '$v', expected $SOCKID_VERSION"
v=$(pkg-config --variable=prefix sockid)
[ "$v" = "$P" ] || fail "sockid.pc says prefix '$v', expected the install prefix $P"
cflags=$(pkg-config --cflags sockid 2>&1) || fail "pkg-config --cflags sockid: $cflags"
libs=$(pkg-config --libs sockid 2>&1) || fail "pkg-config --libs sockid: $libs"
case " $cflags " in *" -I$P/$SOCKID_INCLUDEDIR "*) ;; *) fail "pkg-config --cflags sockid gives '$cflags', without -I$P/$SOCKID_INCLUDEDIR" ;; esac
case " $libs " in *" -L$LIB "*) ;; *) fail "pkg-config --libs sockid gives '$libs', without -L$LIB" ;; esac
note "sockid.pc: version $SOCKID_VERSION, cflags '$cflags', libs '$libs'"

# sockid-attestor.pc, for plugin authors, when the build installs one.
if [ -f "$SOCKID_SRC/attestors/sockid-attestor.pc.in" ]; then
    need_file "$SOCKID_LIBDIR/pkgconfig/sockid-attestor.pc"
    v=$(pkg-config --variable=attestordir sockid-attestor 2>&1)
    [ "$v" = "$P/$SOCKID_PLUGINDIR" ] ||
        fail "sockid-attestor.pc says attestordir '$v', expected $P/$SOCKID_PLUGINDIR"
    acflags=$(pkg-config --cflags sockid-attestor 2>&1) || fail "pkg-config --cflags sockid-attestor: $acflags"
else
    acflags=$cflags
fi

# --- a client built against the prefix ----------------------------------------
# shellcheck disable=SC2086 # flag lists are meant to split
"$SOCKID_CC" -std=c99 -pedantic -Wall -Wextra -Werror -Wstrict-prototypes $SAN $cflags \
    -o "$D/tiny_client" "$HERE/tiny_client.c" -Wl,-rpath,"$LIB" $libs $SAN \
    >"$D/cc.log" 2>&1 || fail "building tiny_client.c against the installed sockid.pc failed:
$(cat "$D/cc.log")"
got=$(lib_of "$D/tiny_client")
[ "$got" = "$LIB/libsockid.so.0" ] || fail "tiny_client loads libsockid from '$got', not from $LIB"
# The plugin header, alone, as a plugin author includes it.
printf '#include <sockid/attestor.h>\nint main(void) { return SOCKID_ATTESTOR_ABI_VERSION > 0 ? 0 : 1; }\n' \
    >"$D/plugin_header.c"
# shellcheck disable=SC2086
"$SOCKID_CC" -std=c99 -pedantic -Wall -Wextra -Werror $acflags -fsyntax-only "$D/plugin_header.c" \
    >"$D/cc.log" 2>&1 || fail "the installed <sockid/attestor.h> does not compile on its own:
$(cat "$D/cc.log")"
# And the client header from C++, which its extern "C" promises.
if command -v c++ >/dev/null 2>&1; then
    printf '#include <sockid/client.h>\nint main() { return sockid_strerror(0) ? 0 : 1; }\n' >"$D/cxx.cc"
    # shellcheck disable=SC2086
    c++ -Wall -Wextra -Werror $cflags -fsyntax-only "$D/cxx.cc" >"$D/cc.log" 2>&1 ||
        fail "the installed <sockid/client.h> does not compile as C++:
$(cat "$D/cc.log")"
fi
note "tiny_client.c builds against the installed sockid.pc (C99, -pedantic -Werror${SAN:+, $SAN}); the headers compile alone"

# --- the installed agent, serving the client ----------------------------------
: >"$D/empty.conf" # not /etc/sockid/agent.conf, whatever this machine has there
LOG=$D/agent.log
IT_LOGS="$IT_LOGS $LOG"
SOCK=$D/agent.sock
ADMIN=$D/admin.sock
SOCKID="$P/$SOCKID_BINDIR/sockid"
setpriv --pdeathsig KILL -- env --default-signal=INT,TERM \
    "$P/$SOCKID_SBINDIR/sockid-agent" --config "$D/empty.conf" --socket "$SOCK" \
    --admin-socket "$ADMIN" --data-dir "$D/data" </dev/null >>"$LOG" 2>&1 &
PID=$!
IT_AGENTS="$IT_AGENTS $PID"
i=0
until "$SOCKID" health --socket "$SOCK" --timeout 1000 >/dev/null 2>&1 &&
    "$SOCKID" status --admin-socket "$ADMIN" --timeout 1000 >/dev/null 2>&1; do
    is_running "$PID" || fail "the installed agent exited during startup"
    [ $i -lt 1000 ] || fail "the installed agent did not answer within 20 s"
    sleep_tick
    i=$((i + 1))
done
plugdir=$(cd "$P/$SOCKID_PLUGINDIR" && pwd -P)
grep -q "attestor unix loaded from $plugdir\$" "$LOG" ||
    fail "the installed agent did not load its plugins from $plugdir by itself (log: $LOG)"
note "the installed agent answers, with the plugins of $plugdir"

ID=spiffe://example.org/install-test
out=$("$SOCKID" entry create --admin-socket "$ADMIN" --spiffe-id "$ID" \
    --selector "unix:uid:$(id -u)" --selector "unix:path:$D/tiny_client" 2>&1) ||
    fail "the installed sockid could not create an entry: $out"
out=$("$D/tiny_client" "$SOCK" install-test 2>&1) || fail "tiny_client against the installed agent: $out"
printf '%s\n' "$out" | sed 's/^/  tiny_client: /'
printf '%s\n' "$out" | grep -qx "spiffe_id $ID" || fail "tiny_client got no token for $ID"
printf '%s\n' "$out" | grep -qx "validated $ID" || fail "the agent did not validate tiny_client's token"
printf '%s\n' "$out" | grep -qx "version $SOCKID_VERSION" || fail "tiny_client saw another version"
printf '%s\n' "$out" | grep -qx "bundle has keys" || fail "tiny_client's bundle has no keys"

kill -TERM "$PID"
agent_wait_exit "$PID"
[ "$EXIT_STATUS" = 0 ] || fail "the installed agent exited with status $EXIT_STATUS on SIGTERM"
[ ! -e "$SOCK" ] || fail "the installed agent left $SOCK behind"
echo "PASS: the install layout is complete, and a client built from it gets a token from the installed agent"
