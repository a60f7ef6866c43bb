#!/usr/bin/env bash
# mypy cannot follow setuptools' package-dir mapping (dlgate.checks lives in checks/,
# dlgate.service in service/), so type-check a copy laid out as installed.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=build/typecheck
rm -rf "$stage" && mkdir -p "$stage"
cp -r dlgate "$stage/dlgate"
cp -r checks "$stage/dlgate/checks"
cp -r service "$stage/dlgate/service"
cd "$stage"
../../.venv/bin/mypy --config-file ../../pyproject.toml -p dlgate
