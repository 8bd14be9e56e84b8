#!/usr/bin/env bash
# From nothing to a local KFP on kind, ready for a first run. Needs Docker, kind, kubectl.
# Not run by the tests (no Docker engine there).
#
#   scripts/kind_e2e.sh            # create cluster, install KFP, apply overlay, load images
#   scripts/kind_e2e.sh --delete   # remove the cluster
#
# Environment:
#   CLUSTER_NAME        kind cluster name (default planets)
#   KIND_NODE_IMAGE     node image, pinned (default kindest/node:v1.30.13)
#   KFP_VERSION         KFP standalone manifests release (default 2.5.0)
#   GCS_KEY_FILE        optional: service-account key JSON for the gs:// pipeline root; fills
#                       the gcs-credentials Secret in kubeflow and planets-serving
set -euo pipefail

cd "$(dirname "$0")/.."
CLUSTER_NAME="${CLUSTER_NAME:-planets}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.30.13}"
KFP_VERSION="${KFP_VERSION:-2.5.0}"
# Images are loaded into the nodes, never pulled: any registry name works.
export PLANETS_IMAGE_REGISTRY="${PLANETS_IMAGE_REGISTRY:-kind.local/planets-mlops}"
PYTHON="${PYTHON:-.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3

if [[ "${1:-}" == "--delete" ]]; then
  kind delete cluster --name "$CLUSTER_NAME"
  exit 0
fi
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: install it first" >&2; exit 1; }
done

echo "==> kind cluster $CLUSTER_NAME ($KIND_NODE_IMAGE)"
if ! kind get clusters | grep -qx "$CLUSTER_NAME"; then
  kind create cluster --name "$CLUSTER_NAME" --image "$KIND_NODE_IMAGE" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER_NAME"

echo "==> KFP standalone $KFP_VERSION"
kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=$KFP_VERSION"
kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=$KFP_VERSION"

echo "==> cluster setup (kustomize/overlays/kind)"
kubectl apply -k kustomize/overlays/kind
if [[ -n "${GCS_KEY_FILE:-}" ]]; then
  for ns in kubeflow planets-serving; do
    kubectl -n "$ns" create secret generic gcs-credentials --from-file=key.json="$GCS_KEY_FILE" \
      --dry-run=client -o yaml | kubectl apply -f -
  done
fi

echo "==> images (built locally, loaded into the nodes)"
scripts/build_images.sh --load --only runtime --only serving
for name in RUNTIME_IMAGE SERVING_IMAGE; do
  kind load docker-image --name "$CLUSTER_NAME" \
    "$("$PYTHON" -c "import planets_mlops.components.images as i; print(i.$name)")"
done

echo "==> waiting for KFP"
kubectl -n kubeflow wait --for=condition=Available --timeout=900s deployment --all
cat <<MSG
KFP is up. Next:
  kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80
  # then compile and submit with service_account="planets-pipeline-runner" (docs/cluster-setup.md)
Fill the label-studio Secret before running import steps (docs/cluster-setup.md).
MSG
