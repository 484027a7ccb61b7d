#!/usr/bin/env bash
# Checks that every C file of the project is formatted as .clang-format says (STYLE §10).
# Prints each offending file and exits 1 if there is any. With --fix, reformats them instead.
set -euo pipefail
cd "$(dirname "$0")/.."

DIRS=(common consensus store api server clients tests jepsen)

fix=0
if [ "${1:-}" = "--fix" ]; then
    fix=1
fi

if ! command -v clang-format >/dev/null; then
    echo "check-format.sh: clang-format not found (run scripts/deps.sh as root)" >&2
    exit 1
fi

# Tracked and untracked-but-not-ignored files, or every file outside a git checkout; never
# build output or generated code.
list_sources() {
    local existing=()
    local d
    for d in "${DIRS[@]}"; do
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

mapfile -t files < <(list_sources)
if [ ${#files[@]} -eq 0 ]; then
    exit 0
fi

if [ $fix -eq 1 ]; then
    clang-format -i "${files[@]}"
    exit 0
fi

bad=0
for f in "${files[@]}"; do
    if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f (run: make format)"
        bad=1
    fi
done
exit $bad
