#!/usr/bin/env bash
# The C ABI's compatibility check (libabigail). capi/abi/llmft.abi is the ABI of include/llmft/llmft.h as of the last
# release of LLMFT_ABI_VERSION (the llmft_* functions, their parameter and return types, the layout of every struct
# they reach), capi/abi/constants.txt its constants (statuses, log levels); the built library is compared with them:
#   capi/abi/check.sh check LIBRARY   fails when a function was removed or changed, or a type reached by one changed
#                                     (a layout, a field), or a constant was removed or renumbered, unless the SONAME
#                                     (libllmft.so.<ABI>) is above the baseline's: the ABI version was raised, so the
#                                     new baseline is due (the update command); functions only added pass, and are
#                                     listed
#   capi/abi/check.sh update LIBRARY  writes the baseline from LIBRARY (after raising LLMFT_ABI_VERSION, or to record
#                                     additions)
# Needs abidw / abidiff (Debian's abigail-tools, installed by scripts/deps.sh test); exits 77 without them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=${1:-} lib=${2:-}
[[ -n $mode && -n $lib ]] || { echo "usage: $0 check|update LIBRARY" >&2; exit 2; }
baseline=${LLMFT_ABI_BASELINE:-$here/llmft.abi}
headers=$(cd "$here/../../include/llmft" && pwd)
supp=$here/suppressions.ini
command -v abidiff > /dev/null && command -v abidw > /dev/null || {
  echo "SKIPPED: abidiff is not installed (scripts/deps.sh test installs abigail-tools)"; exit 77; }

# "NAME VALUE" for each constant of llmft.h: #define LLMFT_X N and enumerators LLMFT_X = N.
constants() {
  sed -n -e 's/^#define \(LLMFT_[A-Z0-9_]*\) \(-\{0,1\}[0-9][0-9]*\).*/\1 \2/p' \
         -e 's/^ *\(LLMFT_[A-Z0-9_]*\) *= *\(-\{0,1\}[0-9][0-9]*\).*/\1 \2/p' "$1"
}

case $mode in
  update)
    abidw --no-corpus-path --no-comp-dir-path --no-show-locs --drop-undefined-syms --headers-dir "$headers" \
      --suppressions "$supp" --out-file "$baseline" "$lib"
    root=$(cd "$here/../.." && pwd)
    sed -i "s|path='$root/|path='|g" "$baseline"  # no path of this machine in the repository
    constants "$headers/llmft.h" > "${LLMFT_ABI_CONSTANTS:-$here/constants.txt}"
    echo "wrote $baseline from $lib" ;;
  check)
    [[ -f $baseline ]] || { echo "no ABI baseline at $baseline: run capi/abi/check.sh update $lib"; exit 1; }
    built_soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    base_soname=$(sed -n "s/.*soname='\([^']*\)'.*/\1/p" "$baseline" | head -1)
    built_abi=${built_soname##*.so.} base_abi=${base_soname##*.so.}
    [[ $built_abi =~ ^[0-9]+$ && $base_abi =~ ^[0-9]+$ ]] || {
      echo "cannot read the ABI versions from the SONAMEs (library: '$built_soname', baseline: '$base_soname')"; exit 1; }
    if (( built_abi < base_abi )); then
      echo "the library's ABI version ($built_soname) is below the baseline's ($base_soname)"; exit 1
    fi
    if (( built_abi > base_abi )); then
      echo "the ABI version was raised ($base_soname -> $built_soname): record the new baseline with"
      echo "  capi/abi/check.sh update $lib"
      exit 0
    fi
    # The constants (statuses, log levels, version macros): each one of the baseline keeps its value.
    while read -r name value; do
      now=$(constants "$headers/llmft.h" | awk -v n="$name" '$1 == n {print $2}')
      if [[ -z $now ]]; then echo "incompatible change of the C ABI: $name was removed from llmft.h"; exit 1; fi
      if [[ $now != "$value" && $name != LLMFT_VERSION_* ]]; then
        echo "incompatible change of the C ABI: $name is $now, was $value (capi/abi/constants.txt)"; exit 1
      fi
    done < "${LLMFT_ABI_CONSTANTS:-$here/constants.txt}"
    set +e
    report=$(abidiff --no-unreferenced-symbols --suppressions "$supp" "$baseline" "$lib" 2>&1)
    rc=$?
    set -e
    removed_or_changed=$(grep -E "^(Functions|Variables) changes summary:" <<< "$report" |
                         grep -vE "summary: 0 Removed(, 0 Changed| \(0 filtered out\), 0 Changed)" || true)
    if (( rc & 1 )); then  # abidiff itself failed
      echo "abidiff failed (status $rc):"; echo "$report"; exit 1
    fi
    if (( rc & 8 )) || [[ -n $removed_or_changed ]]; then
      echo "incompatible change of the C ABI (include/llmft/llmft.h) against $baseline:"
      echo "$report"
      echo "Keep the old functions and structs as they were (grow structs only at the end, add new functions), or"
      echo "raise LLMFT_ABI_VERSION in include/llmft/llmft.h and record the new baseline (capi/abi/check.sh update)."
      exit 1
    fi
    if (( rc & 4 )); then
      echo "compatible additions to the C ABI (record them: capi/abi/check.sh update $lib):"; echo "$report"
    fi
    echo "C ABI of $lib ($built_soname) is compatible with $baseline" ;;
  *) echo "usage: $0 check|update LIBRARY" >&2; exit 2 ;;
esac
