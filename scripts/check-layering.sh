#!/usr/bin/env bash
# The "tidy" test for the dependency rule of DESIGN §1 (STYLE §1 and appendix B). The build
# already refuses links the wrong way; this catches what a link cannot: includes of headers by
# path, third-party headers in the wrong layer, and clocks, RNG and printing in consensus/.
# Prints each offending line as file:line and exits 1 if there is any.
set -euo pipefail
cd "$(dirname "$0")/.."

DIRS=(common consensus store api server clients tests jepsen)

list_sources() {
    local existing=()
    local d
    for d in "$@"; do
        if [ -d "$d" ]; then
            existing+=("$d")
        fi
    done
    if [ ${#existing[@]} -eq 0 ]; then
        return 0
    fi
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files --cached --others --exclude-standard -- "${existing[@]}"
    else
        find "${existing[@]}" -type f
    fi | grep -E '\.[ch]$' | grep -Ev '(^|/)(build[^/]*|gen)/' | sort -u |
        while IFS= read -r f; do
            if [ -f "$f" ]; then
                printf '%s\n' "$f"
            fi
        done
}

bad=0

# check <why> <extended-regex> <file>...: prints matching lines that are not comment lines.
check() {
    local why=$1 regex=$2
    shift 2
    if [ $# -eq 0 ]; then
        return 0
    fi
    local hits
    hits=$(grep -nHE -- "$regex" "$@" | grep -Ev '^[^:]*:[0-9]+:[[:space:]]*(\*|//|/\*)' || true)
    if [ -n "$hits" ]; then
        printf '%s\n' "$hits" | sed "s|\$|    <- $why|"
        bad=1
    fi
}

mapfile -t all_files < <(list_sources "${DIRS[@]}")
mapfile -t consensus_files < <(list_sources consensus)

INC='^[[:space:]]*#[[:space:]]*include[[:space:]]*'

# consensus/ is a pure state machine: no I/O, threads, clocks, RNG or third-party libraries.
check "consensus/ includes only libc and common/" \
    "${INC}<((uv|lmdb|pthread|threads|unistd|fcntl|sys/[^>]*)\.h>|(openssl|nghttp2|protobuf-c)/)" \
    "${consensus_files[@]}"
check "consensus/ has no clock, RNG, environment or printing" \
    '(^|[^[:alnum:]_.>])(clock_gettime|gettimeofday|time|s?rand|random|getenv|printf|fprintf|puts|fputs|fopen)[[:space:]]*\(' \
    "${consensus_files[@]}"

# consensus/ never includes from store/, server/, api/ or clients/, by path or by name.
upper_headers=$(list_sources store server api clients | grep -E '\.h$' | xargs -r -n1 basename |
    grep -vxF -f <(list_sources consensus common | xargs -r -n1 basename) |
    sed 's/\./\\./g' | paste -sd'|' || true)
upper_regex="${INC}\"([^\"]*/)?(store|server|api|clients)/"
if [ -n "$upper_headers" ]; then
    upper_regex="${upper_regex}|${INC}\"($upper_headers)\""
fi
check "consensus/ must not depend on store/, server/, api/ or clients/" "$upper_regex" \
    "${consensus_files[@]}"

# store/ depends on common/ only: never on consensus/, api/, server/ or the event loop.
mapfile -t store_files < <(printf '%s\n' "${all_files[@]}" | grep -E '^store/' || true)
store_regex="${INC}\"([^\"]*/)?(consensus|api|server|clients)/|${INC}\"raft[^\"]*\.h\"|${INC}<(uv|nghttp2/|openssl/)"
check "store/ must depend on common/ only" "$store_regex" "${store_files[@]}"

# clients/ depends on api/ and common/ only: never on server/, store/ or consensus/ headers,
# by path or by name (the build links only latch_api, latch_api_proto and latch_common).
mapfile -t clients_files < <(list_sources clients)
lower_headers=$(list_sources server store consensus | grep -E '\.h$' | xargs -r -n1 basename |
    grep -vxF -f <(list_sources api common clients | xargs -r -n1 basename) |
    sed 's/\./\\./g' | paste -sd'|' || true)
clients_regex="${INC}\"([^\"]*/)?(server|store|consensus|jepsen)/"
if [ -n "$lower_headers" ]; then
    clients_regex="${clients_regex}|${INC}\"($lower_headers)\""
fi
check "clients/ must depend on api/ and common/ only" "$clients_regex" "${clients_files[@]}"

# Third-party libraries stay in their layer.
mapfile -t not_store < <(printf '%s\n' "${all_files[@]}" | grep -Ev '^(store|tests)/' || true)
check "LMDB belongs to store/" "${INC}<lmdb\.h>" "${not_store[@]}"
mapfile -t not_api < <(printf '%s\n' "${all_files[@]}" |
    grep -Ev '^(api|jepsen|tests/unit/api[^/]*|tests/fuzz)/' || true)
check "HTTP/2, TLS and protobuf belong to api/" "${INC}<(nghttp2|openssl|protobuf-c)/" \
    "${not_api[@]}"

exit $bad
