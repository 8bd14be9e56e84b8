#!/usr/bin/env bash
# From nothing to a finished `training` run on a local kind cluster, served and answering.
# Needs docker (or podman), kind, kubectl, and a GCS bucket with two service-account keys.
# The CI machines have no Kubernetes, so only --print-setup runs in the tests
# (tests/test_kustomize.py); every other step is run by hand.
#
#   scripts/kind_e2e.sh                 # everything, up to a served model
#   scripts/kind_e2e.sh --print-setup   # the cluster objects it would apply (kubectl only)
#   scripts/kind_e2e.sh --delete        # remove the cluster
#
# Environment:
#   GCS_BUCKET            required: bucket for the pipeline root, the DVC remote and the bentos
#   GCS_KEY_FILE          required: key JSON of the pipeline's account (roles/storage.objectAdmin
#                         on the bucket); mounted into every step as gcs-credentials
#   GCS_SERVING_KEY_FILE  required: key JSON of a SEPARATE read-only account
#                         (roles/storage.objectViewer); the serving pods get only this one
#   DATA_REPO_URL         optional: git URL (reachable from the pods) of a DVC data repository
#                         whose remote the pipeline key can read. Default: the bundled data set,
#                         pushed to gs://$GCS_BUCKET/planets-mlops/dvcstore and served from an
#                         in-cluster git daemon.
#   CLUSTER_NAME          kind cluster name (default planets)
#   KIND_NODE_IMAGE       node image, pinned (default kindest/node:v1.30.13)
#   KFP_VERSION           KFP standalone manifests release (default 2.17.0: the SDK's line)
#   ENGINE                docker | podman: builds the images and exports them to kind (default docker)
#   EPOCHS                training epochs of the e2e run (default 3)
set -euo pipefail

cd "$(dirname "$0")/.."
CLUSTER_NAME="${CLUSTER_NAME:-planets}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.30.13}"
# The backend must come from the SDK's release line (requirements.lock pins kfp 2.17.x):
# the 2.17 driver/launcher are what tests/test_rbac.py checks the runner's Role against.
KFP_VERSION="${KFP_VERSION:-2.17.0}"
ENGINE="${ENGINE:-docker}"
EPOCHS="${EPOCHS:-3}"
# Images are loaded into the nodes, never pulled: any registry name works.
export PLANETS_IMAGE_REGISTRY="${PLANETS_IMAGE_REGISTRY:-kind.local/planets-mlops}"
PYTHON="${PYTHON:-.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
KFP_NS=kubeflow
SERVING_NS=planets-serving
GIT_PORT=9418
BUILD="build/kind"

die() { echo "kind_e2e: $*" >&2; exit 1; }

check_bucket() {
  [[ -n "${GCS_BUCKET:-}" ]] || die "GCS_BUCKET is not set. Export the name of your bucket, e.g. GCS_BUCKET=my-project-planets."
  [[ "$GCS_BUCKET" =~ ^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$ ]] ||
    die "GCS_BUCKET='$GCS_BUCKET' is not a bucket name (3-63 of a-z 0-9 . _ -, no gs:// prefix)."
  PIPELINE_ROOT="gs://$GCS_BUCKET/planets-mlops/kind/pipeline-root"
}

# The kind overlay with the bucket filled in; Secret templates stay placeholders.
render_setup() {
  kubectl kustomize kustomize/overlays/kind |
    sed "s#gs://REPLACE-WITH-BUCKET/planets-mlops/kind/pipeline-root#$PIPELINE_ROOT#"
}

if [[ "${1:-}" == "--print-setup" ]]; then
  check_bucket
  render_setup
  exit 0
fi
if [[ "${1:-}" == "--delete" ]]; then
  kind delete cluster --name "$CLUSTER_NAME"
  exit 0
fi

check_bucket
for tool in "$ENGINE" kind kubectl git; do
  command -v "$tool" >/dev/null || die "missing $tool: install it first"
done
for var in GCS_KEY_FILE GCS_SERVING_KEY_FILE; do
  [[ -r "${!var:-}" ]] || die "$var='${!var:-}' is not a readable key file (see the header of $0)."
done
key_email() { "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("client_email", ""))' "$1"; }
if [[ "$(key_email "$GCS_KEY_FILE")" == "$(key_email "$GCS_SERVING_KEY_FILE")" ]]; then
  die "GCS_SERVING_KEY_FILE is the pipeline's own account ($(key_email "$GCS_KEY_FILE")). Serving pods must get a separate read-only account (roles/storage.objectViewer)."
fi

echo "==> kind cluster $CLUSTER_NAME ($KIND_NODE_IMAGE)"
if ! kind get clusters | grep -qx "$CLUSTER_NAME"; then
  kind create cluster --name "$CLUSTER_NAME" --image "$KIND_NODE_IMAGE" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER_NAME"

echo "==> KFP standalone $KFP_VERSION"
kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=$KFP_VERSION"
kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=$KFP_VERSION"

# After KFP, always: KFP's install owns kfp-launcher and resets it on every (re)install.
echo "==> cluster setup (kustomize/overlays/kind, bucket $GCS_BUCKET)"
setup="$(mktemp)"
render_setup > "$setup"
if kubectl -n "$KFP_NS" get secret gcs-credentials >/dev/null 2>&1; then
  kubectl apply -f "$setup" -l 'planets-mlops.io/template!=secret'   # keep the filled Secrets
else
  kubectl apply -f "$setup"
fi
rm -f "$setup"
kubectl -n "$KFP_NS" create secret generic gcs-credentials --from-file=key.json="$GCS_KEY_FILE" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$SERVING_NS" create secret generic gcs-serving-credentials \
  --from-file=key.json="$GCS_SERVING_KEY_FILE" --dry-run=client -o yaml | kubectl apply -f -
root="$(kubectl -n "$KFP_NS" get configmap kfp-launcher -o jsonpath='{.data.defaultPipelineRoot}')"
[[ "$root" == "$PIPELINE_ROOT" ]] || die "kfp-launcher says defaultPipelineRoot='$root', expected $PIPELINE_ROOT."

echo "==> waiting for KFP"
kubectl -n "$KFP_NS" wait --for=condition=Available --timeout=900s deployment --all

echo "==> images (built from this checkout, loaded into the nodes)"
# The tags derive from the source (components/images.py), so the pipeline compiled below
# names exactly these images; they are never pulled (imagePullPolicy IfNotPresent).
scripts/build_images.sh --load --engine "$ENGINE" --only runtime --only train-gpu --only serving
images="$("$PYTHON" -c 'from planets_mlops.components.images import ALL_IMAGES; print(" ".join(ALL_IMAGES.values()))')"
for image in $images; do
  archive="$(mktemp --suffix=.tar)"
  "$ENGINE" save -o "$archive" "$image"
  kind load image-archive --name "$CLUSTER_NAME" "$archive"
  rm -f "$archive"
done
RUNTIME_IMAGE="$("$PYTHON" -c 'from planets_mlops.components.images import RUNTIME_IMAGE; print(RUNTIME_IMAGE)')"

if [[ -z "${DATA_REPO_URL:-}" ]]; then
  echo "==> data repository (bundled data set; DVC remote gs://$GCS_BUCKET/planets-mlops/dvcstore)"
  work="$(mktemp -d)"
  GOOGLE_APPLICATION_CREDENTIALS="$GCS_KEY_FILE" "$PYTHON" - "$work/planets-data" "gs://$GCS_BUCKET/planets-mlops/dvcstore" <<'PY'
import sys
from pathlib import Path

from planets_mlops.datarepo import create_data_repo

print(create_data_repo(Path("data/planets/raw"), Path(sys.argv[1]), sys.argv[2], data_path="data/raw"))
PY
  git clone -q --bare "$work/planets-data" "$work/planets-data.git"
  # A git daemon in the runtime image (it has git) serves the repository to the pods.
  kubectl -n "$KFP_NS" apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata: {name: planets-data-git, labels: {app: planets-data-git}}
spec:
  containers:
    - name: git
      image: $RUNTIME_IMAGE
      imagePullPolicy: IfNotPresent
      command: [git, daemon, --reuseaddr, --export-all, --base-path=/srv, --port=$GIT_PORT, /srv]
      ports: [{containerPort: $GIT_PORT}]
      resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {cpu: 500m, memory: 256Mi}}
      volumeMounts: [{name: srv, mountPath: /srv}]
  volumes: [{name: srv, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: planets-data-git}
spec:
  selector: {app: planets-data-git}
  ports: [{port: $GIT_PORT, targetPort: $GIT_PORT}]
YAML
  kubectl -n "$KFP_NS" wait --for=condition=Ready --timeout=180s pod/planets-data-git
  kubectl -n "$KFP_NS" cp "$work/planets-data.git" planets-data-git:/srv/planets-data.git
  rm -rf "$work"
  DATA_REPO_URL="git://planets-data-git.$KFP_NS.svc.cluster.local:$GIT_PORT/planets-data.git"
fi

echo "==> compile for kind: CPU only (no GPU node pool), key Secrets, retries"
"$PYTHON" - "$BUILD" <<'PY'
import sys
from pathlib import Path

from planets_mlops.pipelines.compile import compile_all
from planets_mlops.pipelines.platform import KIND, GpuOptions

for path in compile_all(Path(sys.argv[1]), GpuOptions(count=0, cpu="2", memory="4Gi"), KIND):
    print(path)
PY

echo "==> run training (pipeline root $PIPELINE_ROOT), deploy, and wait"
port="$("$PYTHON" -c 'from planets_mlops.net import free_port; print(free_port())')"
kubectl -n "$KFP_NS" port-forward svc/ml-pipeline "$port:8888" >/dev/null &
forward=$!
trap 'kill "$forward" 2>/dev/null || true' EXIT
sleep 3
"$PYTHON" - "http://127.0.0.1:$port" "$BUILD/training.yaml" "$DATA_REPO_URL" "$PIPELINE_ROOT" "$EPOCHS" <<'PY'
import sys

import kfp

host, package, repo, root, epochs = sys.argv[1:]
client = kfp.Client(host=host)
# The pipeline root is passed per run: KFP 2.17's backend ignores a compiled default root
# and falls back to the kfp-launcher ConfigMap, which a KFP re-install resets.
run = client.create_run_from_pipeline_package(
    package,
    arguments={"data_repo_url": repo, "data_rev": "main", "train_epochs": int(epochs), "deploy": True},
    run_name="kind-e2e-training",
    experiment_name="planets-kind",
    pipeline_root=root,
    service_account="planets-pipeline-runner",
)
print("run", run.run_id)
result = client.wait_for_run_completion(run.run_id, timeout=3600)
state = result.state
print("state", state)
sys.exit(0 if state == "SUCCEEDED" else 1)
PY

echo "==> the served model answers"
kubectl -n "$SERVING_NS" rollout status deployment/planets-classifier --timeout=300s
serve_port="$("$PYTHON" -c 'from planets_mlops.net import free_port; print(free_port())')"
kubectl -n "$SERVING_NS" port-forward svc/planets-classifier "$serve_port:3000" >/dev/null &
serve_forward=$!
trap 'kill "$forward" "$serve_forward" 2>/dev/null || true' EXIT
sleep 3
curl -fsS -F image=@data/planets/raw/Mars/Mars_0.jpg "http://127.0.0.1:$serve_port/predict"
echo
cat <<MSG
Done. KFP UI: kubectl -n $KFP_NS port-forward svc/ml-pipeline-ui 8080:80, then http://localhost:8080
(it reads the gs:// artifacts with the gcs-credentials key named in kfp-launcher's providers).
MSG
