#!/bin/sh
# The interop tests' verifiers, ready or a failure that names what is missing:
#
#   - node's jose, major version 6, installed with npm into NODE_DIR (in the
#     build tree), once: a second run finds it there and installs nothing;
#   - Debian's /usr/bin/python3 importing jwt and cryptography (the packages
#     python3-jwt and python3-cryptography). Another python3 first on PATH
#     may not see Debian's packages, so only /usr/bin/python3 is used.
#
# Each verifier then signs and verifies a token of its own (verify.mjs and
# verify.py --self-test), so that a later failure points at sockid, not at
# the verifier. Never skips: what cannot be had fails the test.
#
# Usage: setup.sh NODE_DIR
set -u
[ $# -eq 1 ] || {
    echo "usage: $0 NODE_DIR" >&2
    exit 2
}
NODE_DIR=$1
case "$NODE_DIR" in
/*) ;;
*) NODE_DIR=$(pwd)/$NODE_DIR ;;
esac
HERE=$(cd "$(dirname "$0")" && pwd)
JOSE_MAJOR=6
MISSING=

missing() {
    echo "MISSING: $*" >&2
    MISSING="$MISSING
  - $*"
}

# --- node's jose ------------------------------------------------------------
jose_version() {
    pkg=$NODE_DIR/node_modules/jose/package.json
    [ -f "$pkg" ] || return 1
    node -e 'process.stdout.write(require(process.argv[1]).version)' "$pkg" 2>/dev/null
}

if ! mkdir -p "$NODE_DIR"; then
    missing "a writable directory $NODE_DIR to install node's jose into"
elif ! command -v node >/dev/null 2>&1; then
    missing "node (the machine's Node.js, which verify.mjs runs on)"
elif ! command -v npm >/dev/null 2>&1; then
    missing "npm (to install node's jose $JOSE_MAJOR into $NODE_DIR)"
else
    v=$(jose_version) || v=
    case "$v" in
    "$JOSE_MAJOR".*)
        echo "node's jose $v is already in $NODE_DIR: nothing to install"
        ;;
    *)
        echo "installing node's jose@$JOSE_MAJOR into $NODE_DIR${v:+ (found $v)}"
        # A package.json of its own, so that npm installs here and not into
        # a project it finds further up.
        [ -f "$NODE_DIR/package.json" ] ||
            printf '{\n  "private": true,\n  "description": "sockid interop test verifiers"\n}\n' \
                >"$NODE_DIR/package.json"
        if npm install --prefix "$NODE_DIR" --no-audit --no-fund "jose@$JOSE_MAJOR" \
            >"$NODE_DIR/npm-install.log" 2>&1; then
            v=$(jose_version) || v=
            case "$v" in
            "$JOSE_MAJOR".*) echo "installed node's jose $v" ;;
            *) missing "node's jose $JOSE_MAJOR: npm installed ${v:-nothing} into $NODE_DIR/node_modules" ;;
            esac
        else
            sed 's/^/  npm: /' "$NODE_DIR/npm-install.log" >&2
            missing "node's jose $JOSE_MAJOR: 'npm install jose@$JOSE_MAJOR' into $NODE_DIR failed (output above)"
            v=
        fi
        ;;
    esac
    case "$v" in
    "$JOSE_MAJOR".*)
        SOCKID_JOSE_DIR=$NODE_DIR node "$HERE/verify.mjs" --self-test ||
            missing "a node and jose $v that verify EdDSA (verify.mjs --self-test failed above)"
        ;;
    esac
fi

# --- PyJWT in Debian's python3 ----------------------------------------------
PY=/usr/bin/python3
if [ ! -x "$PY" ]; then
    missing "$PY (Debian package python3; apt-get install python3)"
else
    py_ok=yes
    for mod in jwt:python3-jwt cryptography:python3-cryptography; do
        name=${mod%%:*}
        pkg=${mod#*:}
        if ! err=$("$PY" -c "import $name" 2>&1); then
            py_ok=no
            missing "$pkg: $PY cannot import $name ($(printf '%s' "$err" | tail -n 1)); apt-get install $pkg"
        fi
    done
    if [ "$py_ok" = yes ]; then
        "$PY" "$HERE/verify.py" --self-test ||
            missing "a PyJWT in $PY that verifies EdDSA (verify.py --self-test failed above; PyJWT 2 with python3-cryptography is needed)"
    fi
fi

if [ -n "$MISSING" ]; then
    echo "FAIL: the interop tests cannot run; missing:$MISSING" >&2
    exit 1
fi
echo "PASS: node's jose and PyJWT are ready"
