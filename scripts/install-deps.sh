#!/bin/sh
# Install the Debian packages egressd needs to build and test, and only the
# ones that are missing.  Runs as root, or through sudo when there is one.
set -eu

PKGS="gcc make pkg-config libinih-dev libmbedtls-dev libsystemd-dev libcriterion-dev ca-certificates curl openssl iproute2 nftables man-db systemd util-linux python3 python3-pytest python3-requests python3-websockets git"

# make bench: the peers and the origin, OpenSSL for the load generator, and
# valgrind for make memcheck
[ "${BENCH:-}" = 1 ] && PKGS="$PKGS nginx-light tinyproxy squid-openssl libssl-dev valgrind"
# make fuzz and make fuzz-smoke: clang and its libFuzzer and sanitizer runtimes
PKGS="$PKGS clang libclang-rt-14-dev"

# Node.js and npm run the official SDKs in the tests; any Node >= 18 will
# do, so an existing one (from any source) is kept.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "install-deps: missing packages:$missing (run as root to install them)" >&2
        exit 1
    fi
fi
echo "install-deps: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
