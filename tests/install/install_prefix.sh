#!/bin/sh
# The install tests' fixture: 'cmake --install BUILD --prefix PREFIX' into a
# fresh PREFIX, as a packager or an operator would run it.
#
# Usage: install_prefix.sh CMAKE BUILD_DIR PREFIX
set -u
[ $# -eq 3 ] || {
    echo "usage: $0 CMAKE BUILD_DIR PREFIX" >&2
    exit 2
}
CMAKE=$1
BUILD=$2
PREFIX=$3
case "$PREFIX" in
*/prefix) ;;
*)
    echo "FAIL: refusing to empty $PREFIX: the prefix must end in /prefix" >&2
    exit 1
    ;;
esac
rm -rf "$PREFIX" || exit 1
if ! "$CMAKE" --install "$BUILD" --prefix "$PREFIX" >"$PREFIX.log" 2>&1; then
    cat "$PREFIX.log" >&2
    echo "FAIL: cmake --install $BUILD --prefix $PREFIX failed (output above)" >&2
    exit 1
fi
n=$(find "$PREFIX" -type f | wc -l)
echo "PASS: installed $n files into $PREFIX"
