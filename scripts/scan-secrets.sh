#!/usr/bin/env bash
# Secret scan (docs/secrets.md): detect-secrets over every file of the tree; exits 1 on any
# finding the audited baseline does not already list. Never rewrites the baseline: a scan in CI
# must not change the checkout. Usage: scripts/scan-secrets.sh [DIR]   (default: this repo)
#   SECRETS_BASELINE=FILE  the baseline (default: DIR/.secrets.baseline)
#   DETECT_SECRETS_HOOK=EXE  the detect-secrets-hook to run (default: the repo's .venv)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "${1:-$repo}" && pwd)"
baseline="${SECRETS_BASELINE:-$root/.secrets.baseline}"
hook="${DETECT_SECRETS_HOOK:-$repo/.venv/bin/detect-secrets-hook}"

if [[ ! -f "$baseline" ]]; then
    echo "scan-secrets: no baseline at $baseline (see docs/secrets.md to create one)" >&2
    exit 2
fi
if [[ ! -x "$hook" ]]; then
    echo "scan-secrets: $hook not found; run make first" >&2
    exit 2
fi

cd "$root"
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # detect-secrets-hook itself calls git; outside a work tree it fails with git's usage text.
    echo "scan-secrets: $root is not a git work tree" >&2
    exit 2
fi
files=()
# Tracked files and new ones not ignored: a secret in a file about to be added counts too.
while IFS= read -r -d '' file; do
    [[ -f "$file" ]] && files+=("$file")
done < <(git ls-files -z --cached --others --exclude-standard)

# The hook updates line numbers in the baseline it is given; give it a copy.
scratch="$(mktemp)"
trap 'rm -f "$scratch"' EXIT
cp "$baseline" "$scratch"
status=0
"$hook" --baseline "$scratch" "${files[@]}" >"$scratch.out" 2>&1 || status=$?
output="$(cat "$scratch.out")"
rm -f "$scratch.out"
case "$status" in
    0 | 3)
        echo "scan-secrets: ${#files[@]} files, no new secrets"
        ;;
    1)
        printf '%s\n' "$output"
        echo "scan-secrets: new findings above; remove the secret, or (a fake) audit it into" \
            "the baseline as docs/secrets.md describes" >&2
        exit 1
        ;;
    *)
        printf '%s\n' "$output" >&2
        echo "scan-secrets: detect-secrets-hook failed ($status)" >&2
        exit 2
        ;;
esac
