#!/bin/sh
# memcheck.sh - integration tests against egressd under valgrind memcheck.
#
# Runs a subset of tests/integration that goes through every path of
# egressd (tunnels, forward, errors, interception with TLS, streaming,
# reloads, metrics, shutdown, process identity) with EGRESSD set to a
# wrapper that execs build/vg/egressd (-O1 -g, no sanitizer) under
#
#   valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite
#            --error-exitcode=99
#
# one log per egressd process, named after the test that started it
# (pytest's PYTEST_CURRENT_TEST).  The tests' own waits on egressd are
# multiplied by EGRESSD_WAIT_SCALE (conftest.py), 10 here.  A test whose
# egressd had a memory error or a definite leak fails (exit code 99 where
# the test expects 0); the report below lists, per test, egressd runs,
# errors, and bytes definitely and possibly lost, then the first stack of
# each error.  Logs stay in build/memcheck/logs.
#
# usage: bench/memcheck.sh [PYTEST ARGS]   (default: the subset below)
#        make memcheck [MEMCHECK_ARGS="tests/integration/test_core.py -k forward"]
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
BIN=${EGRESSD_VG:-$TOP/build/vg/egressd}
OUT=$TOP/build/memcheck
LIMIT=${MEMCHECK_TIMEOUT:-1500} # seconds, for the whole pytest run

[ -x "$BIN" ] || {
    echo "memcheck: $BIN is missing (make build/vg/egressd)" >&2
    exit 2
}
command -v valgrind >/dev/null || {
    echo "memcheck: valgrind is missing (BENCH=1 scripts/install-deps.sh)" >&2
    exit 2
}
rm -rf "$OUT"
mkdir -p "$OUT/logs"

cat >"$OUT/egressd" <<EOF
#!/bin/sh
# written by bench/memcheck.sh: egressd under valgrind, one log per process
name=\$(printf '%s' "\${PYTEST_CURRENT_TEST:-outside-pytest}" |
    sed 's/ ([a-z]*)\$//; s/.*:://; s/[^A-Za-z0-9_.=-]/_/g' | cut -c1-120)
exec valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \\
    --error-exitcode=99 --num-callers=30 --log-file="$OUT/logs/\$name.%p.log" "$BIN" "\$@"
EOF
chmod +x "$OUT/egressd"

# The subset: every path, in about 4 minutes on 2 cores: the core tests
# (tunnels, forward, every error answer, queue and pool, fd exhaustion),
# interception (TLS, streaming, backends), operations (reloads, metrics,
# sd_notify, SIGTERM drain, pool shrink), process identity, allowed_ips in
# a network namespace, inspected requests and WebSocket, secrets, denials,
# retries, fallbacks and budgets.  Left out: install, lockdown and the SDKs (they
# test the system around egressd: packaging, nftables, node).
if [ $# -eq 0 ]; then
    set -- tests/integration/test_core.py tests/integration/test_inference.py \
        tests/integration/test_operations.py tests/integration/test_identity.py \
        tests/integration/test_netns.py tests/integration/test_inspect.py \
        tests/integration/test_secrets.py tests/integration/test_denials.py \
        tests/integration/test_inference_depth.py
fi

cd "$TOP" || exit 2
start=$(date +%s)
timeout -k 30 "$LIMIT" env EGRESSD="$OUT/egressd" EGRESSD_WAIT_SCALE=10 \
    MOCK_BACKEND="$TOP/build/mock-backend" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
    --junitxml="$OUT/junit.xml" "$@" >"$OUT/pytest.out" 2>&1
rc=$?
end=$(date +%s)
tail -n 15 "$OUT/pytest.out"
[ "$rc" -eq 124 ] && echo "memcheck: pytest stopped after ${LIMIT} s"

/usr/bin/python3 - "$OUT" "$((end - start))" "$rc" "$BIN" <<'EOF'
import glob, os, re, sys
import xml.etree.ElementTree as ET

out, secs, rc, binary = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
outcome = {}
try:
    for case in ET.parse(f"{out}/junit.xml").getroot().iter("testcase"):
        name = re.sub(r"[^A-Za-z0-9_.=-]", "_", case.get("name"))
        kinds = [c.tag for c in case]
        outcome[name] = ("failed" if "failure" in kinds or "error" in kinds else
                         "skipped" if "skipped" in kinds else "passed")
except (OSError, ET.ParseError):
    pass


def num(text, pattern):
    m = re.search(pattern, text)
    return int(m.group(1).replace(",", "")) if m else 0


per = {}
stacks = []
for path in sorted(glob.glob(f"{out}/logs/*.log")):
    test = os.path.basename(path).rsplit(".", 2)[0]
    text = open(path, errors="replace").read()
    t = per.setdefault(test, {"runs": 0, "errors": 0, "definite": 0, "possible": 0, "unfinished": 0})
    t["runs"] += 1
    if "ERROR SUMMARY" not in text:
        t["unfinished"] += 1  # killed before valgrind could report
        continue
    t["errors"] += num(text, r"ERROR SUMMARY: ([\d,]+) errors")
    t["definite"] += num(text, r"definitely lost: ([\d,]+) bytes")
    t["possible"] += num(text, r"possibly lost: ([\d,]+) bytes")
    body = text.split("HEAP SUMMARY")[0]
    for block in re.split(r"\n==\d+== \n", body):
        if re.search(r"==\d+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|"
                     r"Source and destination|Argument|.*[Ff]ree)", block) and "Command:" not in block:
            stacks.append((test, os.path.basename(path), block.strip()))
    for block in re.findall(r"(==\d+== [\d,]+ bytes in [\d,]+ blocks are definitely lost.*?)(?:\n==\d+== \n)",
                            text, re.S):
        stacks.append((test, os.path.basename(path), block.strip()))

print(f"\n### memcheck: {len(per)} tests started egressd, {sum(t['runs'] for t in per.values())} egressd runs, "
      f"{secs} s, pytest exit {rc}\n")
print(f"binary: {binary}")
print("valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99\n")
print("| test | pytest | egressd runs | errors | definitely lost (bytes) | possibly lost (bytes) | unfinished logs |")
print("|---|---|---|---|---|---|---|")
for test in sorted(set(per) | set(outcome)):
    t = per.get(test, {"runs": 0, "errors": 0, "definite": 0, "possible": 0, "unfinished": 0})
    print(f"| {test} | {outcome.get(test, '?')} | {t['runs']} | {t['errors']} | {t['definite']} | "
          f"{t['possible']} | {t['unfinished']} |")
tot = {k: sum(t[k] for t in per.values()) for k in ("errors", "definite", "possible", "unfinished")}
print(f"| **total** | {sum(v == 'passed' for v in outcome.values())} passed, "
      f"{sum(v == 'failed' for v in outcome.values())} failed | {sum(t['runs'] for t in per.values())} | "
      f"{tot['errors']} | {tot['definite']} | {tot['possible']} | {tot['unfinished']} |")
if stacks:
    print("\nFirst stacks (at most 10):\n")
    for test, log, block in stacks[:10]:
        lines = block.splitlines()
        print(f"{test} ({log}):\n" + "\n".join(lines[:25]) + ("\n  ..." if len(lines) > 25 else "") + "\n")
EOF
exit "$rc"
