#!/usr/bin/env bash
# fuzz/run.sh MODE SECONDS JOBS TARGET... - run libFuzzer targets, bounded.
#
#   MODE smoke: each target on a fresh copy of its seeds (build/fuzz-corpus/smoke/T)
#   MODE fuzz:  each target on its growing copy (build/fuzz-corpus/T)
#
# For every target: first its regression inputs (fuzz/regressions/T/*) run
# once each and must pass, except those fuzz/known-findings.txt lists as
# open (they run alone, with a short timeout, and may still fail); then the
# fuzzer runs for SECONDS.  A crash, sanitizer report, leak, failed
# invariant or timeout (-timeout, FUZZ_TIMEOUT seconds) fails the target,
# unless it matches an open finding (same target, same kind, its function
# on the stack): then the fuzzer starts again for the time that is left.
# JOBS targets run at a time.  One line per target is printed; the full
# libFuzzer output is kept in build/fuzz-logs/T.log and the inputs that
# failed in build/fuzz-artifacts/T/.  The committed corpus is never written.
set -u

mode=$1 secs=$2 jobs=$3
shift 3
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD:-$root/build}
timeout=${FUZZ_TIMEOUT:-10}
known_timeout=${FUZZ_KNOWN_TIMEOUT:-3} # an open timeout finding need not take all of -timeout
max_restarts=200 # the time bound ends the loop; this only stops a crash-at-start loop
known=$root/fuzz/known-findings.txt
logs=$build/fuzz-logs
mkdir -p "$logs"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

max_len() {
    case $1 in
    http_request | http_response | swap) echo 9000 ;;
    ini) echo 65536 ;;
    *) echo 4096 ;;
    esac
}

# The open findings of a target: "file kind function" per line.
open_findings() {
    [ -f "$known" ] || return 0
    awk -v t="$1" '!/^[ \t]*(#|$)/ && $2 == t { k = $5; sub(/:$/, "", k); print $1, k, $3 }' "$known"
}

# kind of the failure a libFuzzer log reports
classify() {
    if grep -q 'ERROR: libFuzzer: timeout' "$1"; then echo timeout
    elif grep -q 'ERROR: LeakSanitizer' "$1"; then echo leak
    elif grep -q '^invariant failed:' "$1"; then echo invariant
    elif grep -q 'runtime error:' "$1"; then echo ubsan
    elif grep -q -e 'ERROR: libFuzzer: out-of-memory' -e 'ERROR: libFuzzer: malloc' "$1"; then echo oom
    elif grep -q -e 'ERROR: AddressSanitizer' -e 'ERROR: libFuzzer: deadly signal' "$1"; then echo crash
    else echo error
    fi
}

# function names on the stacks a log shows, innermost first
frames() {
    sed -n 's/^ *#[0-9]* 0x[0-9a-f]* in \([^ ]*\) .*/\1/p' "$1"
}

# first frame in egressd's own code (not the fuzz harness, not libc)
first_frame() {
    grep -E '^ *#[0-9]+ 0x[0-9a-f]+ in [^ ]+ .*/(policy|inference|tls|proxy)/[^ /]+\.c:' "$1" |
        head -n 1 | sed 's/^ *#[0-9]* 0x[0-9a-f]* in \([^ ]*\) \(.*\)/\1 \2/' |
        sed "s|$root/||"
}

# one line saying what failed, and where
describe() {
    local kind where
    kind=$(classify "$1")
    where=$(first_frame "$1" | head -c 160)
    if [ "$kind" = invariant ]; then
        grep -m1 '^invariant failed:' "$1" | sed "s|$root/||"
    else
        echo "$kind${where:+ in $where}"
    fi
}

# the sanitizer's or libFuzzer's own lines about a failure, indented
excerpt() {
    {
        grep -m1 -e '^invariant failed:' -e 'ERROR:' -e 'runtime error:' "$1"
        grep -m1 '^SUMMARY:' "$1"
    } | sed 's/^/    /'
}

# the known finding a failure matches: "file", or nothing
match_known() { # target log kind
    local file kind fn
    while read -r file kind fn; do
        if [ "$kind" = "$3" ] && frames "$2" | grep -qx -- "$fn"; then
            echo "$file"
            return
        fi
    done < <(open_findings "$1")
}

run_target() {
    local t=$1 exe=$build/fuzz/bin/$1 log=$logs/$1.log corpus began=$SECONDS
    local art=$build/fuzz-artifacts/$1/ out=$logs/$1.summary
    local opts=(-max_len="$(max_len "$t")" -timeout="$timeout" -rss_limit_mb=2048
        -artifact_prefix="$art" -print_final_stats=1)
    local dict=$root/fuzz/dict/${t%%_*}.dict # http_request and http_response share http.dict
    [ -f "$dict" ] && opts+=(-dict="$dict")
    if [ "$mode" = smoke ]; then
        corpus=$build/fuzz-corpus/smoke/$t
        rm -rf "$corpus"
    else
        corpus=$build/fuzz-corpus/$t
    fi
    mkdir -p "$corpus" "$art"
    cp -n "$root/fuzz/corpus/$t"/* "$corpus"/ 2>/dev/null
    : >"$log"

    local notes="" fail="" rc
    # regressions: the fixed ones must pass, the open ones may still fail
    local plain=() open=() f
    local open_files
    open_files=$(open_findings "$t" | awk '{ print $1 }')
    for f in "$root/fuzz/regressions/$t"/*; do
        [ -f "$f" ] || continue
        if grep -qxF -- "fuzz/regressions/$t/${f##*/}" <<<"$open_files"; then
            open+=("$f")
        else
            plain+=("$f")
        fi
    done
    for f in $open_files; do
        [ -f "$root/$f" ] || fail="known-findings.txt lists $f, which does not exist"
    done
    local run=$logs/$t.run.log
    if [ ${#plain[@]} -gt 0 ]; then
        "$exe" "${opts[@]}" "${plain[@]}" >"$run" 2>&1 </dev/null
        rc=$?
        { echo "== regressions: ${plain[*]##*/}"; cat "$run"; } >>"$log"
        if [ $rc -ne 0 ]; then
            fail="regression $(grep -o 'Running: [^ ]*' "$run" | tail -n 1 | sed "s|Running: $root/||"): $(describe "$run")"
            excerpt "$run" >"$logs/$t.excerpt"
        fi
        notes="${#plain[@]} regressions pass"
    fi
    local n_open=0
    for f in "${open[@]}"; do
        "$exe" "${opts[@]}" -timeout="$known_timeout" "$f" >"$run" 2>&1 </dev/null
        rc=$?
        { echo "== open finding: ${f##*/}"; cat "$run"; } >>"$log"
        if [ $rc -eq 0 ]; then
            notes="$notes${notes:+, }${f#"$root"/} PASSES now: remove its line from fuzz/known-findings.txt"
        elif [ -n "$(match_known "$t" "$run" "$(classify "$run")")" ]; then
            n_open=$((n_open + 1))
        else
            fail="open finding ${f#"$root"/} now fails otherwise: $(describe "$run")"
            excerpt "$run" >"$logs/$t.excerpt"
        fi
    done
    [ $n_open -gt 0 ] && notes="$notes${notes:+, }$n_open open finding(s) still fail"

    # fuzzing, restarted after an open finding
    local start=$SECONDS runs=0 restarts=0 left h
    local -A hits=()
    while [ -z "$fail" ]; do
        left=$((secs - (SECONDS - start)))
        [ $left -ge 1 ] || break
        echo "== fuzzing for $left s" >>"$log"
        "$exe" "${opts[@]}" -max_total_time="$left" "$corpus" >"$run" 2>&1 </dev/null
        rc=$?
        cat "$run" >>"$log"
        runs=$((runs + $(sed -n 's/^stat::number_of_executed_units: //p' "$run" | tail -n 1 | grep . || echo 0)))
        [ $rc -eq 0 ] && break
        local kind hit input
        kind=$(classify "$run")
        hit=$(match_known "$t" "$run" "$kind")
        input=$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$run" | tail -n 1)
        if [ -n "$hit" ]; then
            hits["$kind ${hit##*/}"]=$((${hits["$kind ${hit##*/}"]:-0} + 1))
            restarts=$((restarts + 1))
            [ $restarts -lt $max_restarts ] || break
            continue
        fi
        fail="$(describe "$run")${input:+; input ${input#"$root"/}}"
        excerpt "$run" >"$logs/$t.excerpt"
    done
    local took=$((SECONDS - began))
    for h in "${!hits[@]}"; do
        notes="$notes${notes:+, }known ${h%% *} x${hits[$h]} (${h#* })"
    done
    if [ -n "$fail" ]; then
        {
            printf '%-14s FAIL %10s runs %4s s  %s\n' "$t" "$runs" "$took" "$fail"
            [ -s "$logs/$t.excerpt" ] && cat "$logs/$t.excerpt"
            printf '    log %s\n' "${log#"$root"/}"
        } >"$out"
        cat "$out"
        return 1
    fi
    printf '%-14s ok   %10s runs %4s s  %s\n' "$t" "$runs" "$took" "$notes" | tee "$out"
}

begin=$SECONDS
status=0
for t in "$@"; do
    if [ ! -x "$build/fuzz/bin/$t" ]; then
        echo "fuzz: $build/fuzz/bin/$t is not built" >&2
        exit 2
    fi
done
for t in "$@"; do
    rm -f "$logs/$t.summary" "$logs/$t.excerpt"
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    run_target "$t" &
done
wait
for t in "$@"; do
    grep -q '^[^ ]* *ok ' "$logs/$t.summary" 2>/dev/null || status=1
done
label=fuzz
[ "$mode" = smoke ] && label=fuzz-smoke
echo "$label: $# targets, $jobs at a time, $((SECONDS - begin)) s: $([ $status -eq 0 ] && echo ok || echo FAILED)"
exit $status
