#!/usr/bin/env bash
# `npm test`: everything. Build (dist/, what the lab's controllers run), lint (Biome and the
# 120-column check), typecheck, unit tests, then the lab tests on real hosts (network namespaces
# + sshd; needs root). Brings the lab up if it is not up, and leaves it as it found it.
set -euo pipefail
cd "$(dirname "$0")/../.."

echo "== build"
node scripts/build.mjs

echo "== lint"
npx biome check .
node scripts/dev/check-width.mjs

echo "== typecheck"
npx tsc --noEmit -p tsconfig.json

# The infra tests create a real venv; Debian's python3 lacks ensurepip without python3-venv.
if ! python3 -c 'import ensurepip' >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== apt-get install python3-venv"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
fi

echo "== unit tests"
npx vitest run --project unit

started_lab=0
if ! bash tests/lab/lab.sh status >/dev/null 2>&1; then
  echo "== lab up"
  bash tests/lab/lab.sh up
  started_lab=1
fi
finish() {
  if [ "$started_lab" = 1 ] && [ "${UGRO_KEEP_LAB:-0}" != 1 ]; then bash tests/lab/lab.sh down || true; fi
}
trap finish EXIT

echo "== lab tests"
npx vitest run --project lab
