# Sourced by demo.sh and test.sh: installs the Debian packages sockid needs,
# only those missing, so a second run installs nothing.

# What building needs.
SOCKID_DEPS_BUILD="cmake make gcc pkg-config libsodium-dev libprotobuf-c-dev protobuf-c-compiler
  libinih-dev libjansson-dev libsqlite3-dev libcgroup-dev libsystemd-dev"
# What the test suite adds: clang with its sanitizer and libFuzzer runtimes,
# cmocka, and the tools the integration tests drive.
SOCKID_DEPS_TEST="clang libclang-rt-14-dev libcmocka-dev util-linux procps systemd cgroup-tools groff-base python3 python3-jwt
  python3-cryptography python3-prometheus-client"

deps_missing() {
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        case "$status" in
        *"install ok installed"*) ;;
        *) printf '%s ' "$pkg" ;;
        esac
    done
}

# deps_install PKG...: installs the missing ones, or says how.
deps_install() {
    # shellcheck disable=SC2086
    missing=$(deps_missing $*)
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "sockid: missing Debian packages: $missing" >&2
        echo "sockid: install them with: sudo apt-get install -y $missing" >&2
        exit 1
    fi
    echo "sockid: installing $missing"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have no package lists yet: update only if needed.
    # shellcheck disable=SC2086
    if ! apt-get install -y --no-install-recommends $missing; then
        apt-get update
        # shellcheck disable=SC2086
        apt-get install -y --no-install-recommends $missing
    fi
}

# deps_node: node and npm for the JOSE interop test. Installed from Debian only
# when the commands are missing: a machine may carry its own node build.
deps_node() {
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        return 0
    fi
    deps_install nodejs npm
}
