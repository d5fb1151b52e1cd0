#!/usr/bin/env bash
# Runs an example host and passes when it exits 0 and printed its answer ("answer: ..."): the answer comes last, so
# a crash while freeing handles or shutting down still fails the test.
#   tests/run_example.sh COMMAND [ARG...]
set -uo pipefail
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
[[ $rc == 0 ]] || { echo "run_example: exited with status $rc"; exit 1; }
grep -q "answer: " <<< "$out" || { echo "run_example: no answer printed"; exit 1; }
