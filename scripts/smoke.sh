#!/usr/bin/env bash
# Smoke test: run egressd on conf/egressd.ini (moved to a free port), try
# destinations the example policy allows and denies, print PASS/FAIL for
# each, and exit non-zero on any FAIL.
#
# The sandbox this runs in may have no network: an allowed destination
# passes when egressd let it through the policy (a 200 tunnel, or a
# 502 dns_failure / upstream error from a closed network), and fails only on
# a policy denial.
set -u
cd "$(dirname "$0")/.."
EGRESSD=${EGRESSD:-build/rel/egressd}
CONF=${CONF:-conf/egressd.ini}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT

sed -e 's/^listen *=.*/listen = 127.0.0.1:0/' -e 's/^connect_timeout *=.*/connect_timeout = 3s/' \
    -e 's/^dns_timeout *=.*/dns_timeout = 3s/' -e "s|/var/lib/egressd|$work|" "$CONF" >"$work/egressd.ini"
"$EGRESSD" -c "$work/egressd.ini" 2>"$work/log" &
pid=$!
port=""
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/log" | head -1)
    [ -n "$port" ] && break
    sleep 0.05
done
if [ -z "$port" ]; then
    echo "FAIL egressd did not start:"; cat "$work/log"; exit 1
fi
proxy="http://127.0.0.1:$port"
fails=0

result() { # name, ok(0/1), detail
    if [ "$2" -eq 0 ]; then echo "PASS $1 ($3)"; else echo "FAIL $1 ($3)"; fails=$((fails + 1)); fi
}

# CONNECT status and egressd's error code (if any) for a destination
connect_to() {
    curl -sS --noproxy '' -o /dev/null -D "$work/h" -p -x "$proxy" --max-time 15 "$1" 2>/dev/null
    code=$(awk 'NR==1 {print $2}' "$work/h")
    err=$(tr -d '\r' <"$work/h" | sed -n 's/^X-Egressd-Error: //Ip' | head -1)
}

check_allowed() {
    connect_to "$1"
    [ "$code" = 200 ] || [ "$err" = dns_failure ] || [ "$err" = upstream_unreachable ] || [ "$err" = upstream_timeout ]
    result "allowed $1" $? "status ${code:-none} ${err:-}"
}

check_denied() {
    connect_to "$1"
    [ "$code" = 403 ] && [ "$err" = policy_denied ]
    result "denied $1" $? "status ${code:-none} ${err:-}"
}

check_forward_denied() {
    code=$(curl -sS --noproxy '' -o /dev/null -w '%{http_code}' -x "$proxy" --max-time 15 "$1")
    [ "$code" = 403 ]
    result "denied $1" $? "status $code"
}

check_intercepted() { # url, what the answer must contain
    body=$(curl -sS --noproxy '' -x "$proxy" --cacert "$work/ca-bundle.pem" --max-time 15 "$1" 2>&1)
    case "$body" in *"$2"*) result "intercepted $1" 0 "answered by the route" ;;
    *) result "intercepted $1" 1 "$body" ;; esac
}

"$EGRESSD" -t -c "$work/egressd.ini" >/dev/null 2>&1
result "config check $CONF" $? "egressd -t"
check_allowed https://github.com/
check_allowed https://raw.githubusercontent.com/
check_allowed https://pypi.org/simple/
check_denied https://example.com/
check_denied https://github.com:8443/
check_denied https://metadata.google.internal/
check_forward_denied http://169.254.169.254/latest/meta-data/
check_forward_denied http://example.org/
check_intercepted https://api.openai.com/v1/models '"object":"list"'
check_intercepted http://inference.local/v1/models '"object":"list"'
check_intercepted https://api.openai.com/v1/files '"not_inference"'

kill -TERM "$pid"
wait "$pid"
result "clean stop on SIGTERM" $? "exit status"
if grep -q -e "AddressSanitizer" -e "runtime error:" "$work/log"; then
    result "no sanitizer reports" 1 "see log"; cat "$work/log"
fi
echo "smoke: $fails failed"
[ "$fails" -eq 0 ]
