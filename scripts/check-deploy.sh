#!/usr/bin/env bash
# Lints what deploys the server: the Dockerfile (hadolint), the Kubernetes
# and KServe manifests (kubernetes-validate; KServe's custom resources have
# no bundled schema and are checked as YAML), and the GitHub workflows
# (actionlint). The tools come from tests/python/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin

"$bin/hadolint" Dockerfile
"$bin/kubernetes-validate" --strict deploy/kubernetes/*.yaml deploy/kserve/*.yaml
"$bin/actionlint"
echo "Dockerfile, manifests and workflows pass their linters"
