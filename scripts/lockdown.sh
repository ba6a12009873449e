#!/bin/sh
# Lock a sandbox's network down to egressd: only the egressd user may open
# connections to the network; every other process may reach loopback (and
# so the proxy) and nothing else, so a process that ignores HTTP_PROXY gets
# an immediate refusal instead of a way out.
#
#   lockdown.sh --user egressd            install the rules (nftables)
#   lockdown.sh --user egressd --print    print them, change nothing
#   lockdown.sh --remove                  remove them
#
# The rules live in their own table (inet egressd_lockdown), for IPv4 and
# IPv6 alike, and replace any earlier copy of themselves.
set -eu

user="" action=apply
while [ $# -gt 0 ]; do
    case "$1" in
    --user) user=${2:?--user needs a name}; shift 2 ;;
    --print) action=print; shift ;;
    --remove) action=remove; shift ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "lockdown: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

command -v nft >/dev/null 2>&1 || { echo "lockdown: nft not found (apt-get install nftables)" >&2; exit 1; }

if [ "$action" = remove ]; then
    nft delete table inet egressd_lockdown 2>/dev/null || true
    exit 0
fi
[ -n "$user" ] || { echo "lockdown: --user NAME is required" >&2; exit 2; }
uid=$(id -u "$user" 2>/dev/null) || { echo "lockdown: no such user '$user'" >&2; exit 1; }

rules=$(cat <<EOF_RULES
table inet egressd_lockdown {
    chain output {
        type filter hook output priority 0; policy accept;
        oifname "lo" accept
        meta skuid $uid accept
        ct state established,related accept
        meta l4proto tcp reject with tcp reset
        reject with icmpx type admin-prohibited
    }
}
EOF_RULES
)

if [ "$action" = print ]; then
    printf '%s\n' "$rules"
    exit 0
fi
nft delete table inet egressd_lockdown 2>/dev/null || true
printf '%s\n' "$rules" | nft -f -
echo "lockdown: only uid $uid ($user) may reach the network; everyone else only loopback"
