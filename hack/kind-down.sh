#!/usr/bin/env bash
# kind-down: delete what hack/kind-up.sh created: the kind cluster (with
# every volume in it) and the registry container kind-registry (with the
# images pushed to it). KEEP_REGISTRY=1 keeps the registry, which other kind
# clusters following kind's local registry recipe may share.
# Environment: KIND_CLUSTER_NAME (eventpipe).
set -euo pipefail

cluster=${KIND_CLUSTER_NAME:-eventpipe}
registry=kind-registry

missing=()
for tool in docker kind; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "kind-down: missing ${missing[*]}" >&2
  exit 1
fi

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  kind delete cluster --name "$cluster"
else
  echo "kind-down: no kind cluster ${cluster}"
fi

if [ "${KEEP_REGISTRY:-0}" = 1 ]; then
  echo "kind-down: keeping ${registry}"
elif docker inspect "$registry" >/dev/null 2>&1; then
  docker rm -f "$registry" >/dev/null
  echo "kind-down: removed ${registry}"
fi
