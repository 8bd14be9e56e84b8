"""Apply, rollout wait, smoke test and rollback of ``planets_mlops.deploy.apply``.

No Kubernetes API server runs on this machine, so ``FakeCluster`` below is a FAKE of the
``ClusterApi`` boundary only (get / apply / create / delete / list_pods), safe to call from
several threads: it stores applied objects, honours resourceVersion preconditions,
bumps the generation and the Deployment revision when the pod template changes, and plays
the Deployment controller and kubelet for each bento tag (healthy, stuck, crash-looping).
Everything above that boundary (manifests, hashing, status reading, rollback) is real.
The smoke-test HTTP call is checked against a real local server on 127.0.0.1.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from planets_mlops.deploy import cluster, manifests, rollout, smoke
from planets_mlops.deploy.apply import DeployResult, deploy, deploy_model
from planets_mlops.deploy.manifests import DeploySpec
from planets_mlops.errors import DeployError, InvalidParameterError

IMAGE = "europe-docker.pkg.dev/proj/planets/serving:0.1.0"
GOOD_ANSWER = {"prediction": "Mars", "probabilities": {"Mars": 0.9, "Earth": 0.1}}


class FakeCluster:
    """Fake ClusterApi: an in-memory API server plus a scripted controller and kubelet.

    ``behaviour`` maps a bento tag to "healthy" (default), "stuck" (pods never ready),
    "crashloop" (container in CrashLoopBackOff, restarted 4 times), "deadline"
    (ProgressDeadlineExceeded), "pullerror" (ErrImagePull for ever), or "pull-then-ready" /
    "crash-then-ready" (ErrImagePull / a first crash for the first FLAKY_POLLS pod reads,
    then healthy: a registry hiccup, a bucket not readable yet at the first start).
    """

    FLAKY_POLLS = 3

    def __init__(self, behaviour: dict[str, str] | None = None) -> None:
        self.behaviour = behaviour or {}
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.applied: list[dict[str, Any]] = []
        self.fail_apply_of: set[str] = set()
        self.lock = threading.RLock()
        self.versions = 0
        self.lease_calls: list[tuple[str, str]] = []
        self.pod_reads: dict[str, int] = {}

    # -- ClusterApi ---------------------------------------------------------------
    def _record(self, call: str, kind: str) -> None:
        # Lease calls (deploy serialisation) are kept apart: the tests below look at what
        # was done to the served objects.
        (self.lease_calls if kind == "Lease" else self.calls).append((call, kind))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            self._record("get", kind)
            obj = self.objects.get((kind, namespace, name))
            if obj and kind == "Deployment":
                obj["status"] = self._deployment_status(obj)  # the kubelet moved on
            return copy.deepcopy(obj) if obj else None

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            meta = obj["metadata"]
            if (obj["kind"], meta["namespace"], meta["name"]) in self.objects:
                raise cluster.ClusterConflict(f"{obj['kind']} {meta['name']} already exists")
            return self.apply(obj)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return self._apply(obj)

    def _apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._record("apply", obj["kind"])
        if obj["kind"] in self.fail_apply_of:
            raise RuntimeError(f"admission webhook denied {obj['kind']}")
        meta = obj["metadata"]
        key = (obj["kind"], meta["namespace"], meta["name"])
        old = self.objects.get(key)
        wanted = meta.get("resourceVersion")
        if wanted is not None and wanted != (old or {}).get("metadata", {}).get("resourceVersion"):
            raise cluster.ClusterConflict(f"{obj['kind']} {meta['name']}: resourceVersion moved")
        if obj["kind"] != "Lease":
            self.applied.append(copy.deepcopy(obj))
        self.versions += 1
        new = copy.deepcopy(obj)
        new["metadata"]["generation"] = (old or {}).get("metadata", {}).get("generation", 0)
        if old is None or old.get("spec") != obj.get("spec"):
            new["metadata"]["generation"] += 1
        new["metadata"]["uid"] = (old or {}).get("metadata", {}).get("uid", f"uid-{len(self.objects)}")
        new["metadata"]["resourceVersion"] = str(self.versions)
        new["metadata"]["managedFields"] = [{"manager": manifests.FIELD_MANAGER}]
        annotations = new["metadata"].setdefault("annotations", {})
        if obj["kind"] == "Deployment":
            revision = int(
                (old or {}).get("metadata", {}).get("annotations", {}).get(rollout.REVISION_ANNOTATION, "0")
            )
            if old is None or old["spec"]["template"] != obj["spec"]["template"]:
                revision += 1
            annotations[rollout.REVISION_ANNOTATION] = str(revision)
            new["status"] = self._deployment_status(new)
        elif obj["kind"] == "InferenceService":
            ready = self._mode(new) == "healthy"
            new["status"] = {
                "observedGeneration": new["metadata"]["generation"],
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "address": {"url": f"http://{meta['name']}-predictor.{meta['namespace']}.svc.cluster.local"},
            }
        elif obj["kind"] == "Service":
            new.setdefault("spec", {})["clusterIP"] = "10.96.0.42"
        self.objects[key] = new
        return copy.deepcopy(new)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self.lock:
            self._record("delete", kind)
            self.objects.pop((kind, namespace, name), None)

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        with self.lock:
            return self._list_pods(namespace, label_selector)

    def _list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self.calls.append(("list_pods", label_selector))
        wanted = dict(part.split("=", 1) for part in label_selector.split(","))
        pods = []
        for (kind, ns, _), obj in self.objects.items():
            if kind != "Deployment" or ns != namespace:
                continue
            template = obj["spec"]["template"]
            if not all(template["metadata"]["labels"].get(k) == v for k, v in wanted.items()):
                continue
            mode = self._mode(obj)
            if mode.endswith("-then-ready"):
                tag = self._tag(obj)
                self.pod_reads[tag] = self.pod_reads.get(tag, 0) + 1
            state: dict[str, Any] = {"running": {}}
            last: dict[str, Any] = {}
            restarts = 4
            if mode in ("pullerror", "pull-then-ready"):
                state = {"waiting": {"reason": "ErrImagePull", "message": "rpc error: code = Unavailable"}}
            elif mode == "crash-then-ready":
                state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
                last, restarts = {"terminated": {"exitCode": 1, "reason": "Error"}}, 1
            elif mode == "crashloop":
                state = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": "back-off 40s restarting failed container",
                    }
                }
                last = {"terminated": {"exitCode": 1, "reason": "Error"}}
            elif mode == "stuck":
                state = {"waiting": {"reason": "ContainerCreating"}}
            pods.append(
                {
                    "metadata": {
                        "name": f"{obj['metadata']['name']}-abc12",
                        "labels": template["metadata"]["labels"],
                    },
                    "status": {
                        "containerStatuses": [
                            {
                                "name": "bento",
                                "state": state,
                                "lastState": last,
                                "restartCount": restarts if last else 0,
                            }
                        ]
                    },
                }
            )
        return pods

    # -- the scripted controller --------------------------------------------------
    def _tag(self, obj: dict[str, Any]) -> str:
        pod = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else obj["spec"]["predictor"]
        env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        return str(env["BENTO_TAG"])

    def _mode(self, obj: dict[str, Any]) -> str:
        tag = self._tag(obj)
        mode = self.behaviour.get(tag, "healthy")
        if mode.endswith("-then-ready") and self.pod_reads.get(tag, 0) > self.FLAKY_POLLS:
            return "healthy"
        return mode

    def _deployment_status(self, obj: dict[str, Any]) -> dict[str, Any]:
        replicas = obj["spec"]["replicas"]
        status: dict[str, Any] = {"observedGeneration": obj["metadata"]["generation"]}
        mode = self._mode(obj)
        if mode == "healthy":
            return {
                **status,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            }
        # maxSurge 1, maxUnavailable 0: one new pod that never becomes available.
        status.update({"replicas": replicas + 1, "updatedReplicas": 1, "availableReplicas": replicas})
        if mode == "deadline":
            status["conditions"] = [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "x" has timed out progressing.',
                }
            ]
        return status

    def deployment(self, name: str = "planets-classifier") -> dict[str, Any]:
        return self.objects[("Deployment", "planets-serving", name)]


class FakeClock:
    """Time that advances only when deploy() sleeps, so timeouts cost no wall time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make_spec(tag: str = "planets_classifier:v1", **overrides: Any) -> DeploySpec:
    fields: dict[str, Any] = {
        "name": "planets-classifier",
        "namespace": "planets-serving",
        "image": IMAGE,
        "bento_uri": f"gs://planets-artifacts/bentos/{tag.replace(':', '-')}.bento",
        "bento_tag": tag,
    }
    fields.update(overrides)
    return DeploySpec(**fields)


class Predictor:
    """Records smoke-test calls; answers ``answer`` (or raises it if it is an exception)."""

    def __init__(self, answer: Any = None) -> None:
        self.answer = GOOD_ANSWER if answer is None else answer
        self.calls: list[tuple[str, bytes]] = []

    def __call__(self, url: str, image: bytes, timeout_s: float) -> dict[str, Any]:
        self.calls.append((url, image))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def run_deploy(
    cluster: FakeCluster, spec: DeploySpec, predictor: Predictor | None = None, timeout_s: float = 60
) -> DeployResult:
    clock = FakeClock()
    return deploy(
        spec,
        cluster,
        timeout_s=timeout_s,
        predict=predictor or Predictor(),
        poll_s=5,
        clock=clock,
        sleep=clock.sleep,
    )


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


# -- success paths ------------------------------------------------------------------


@pytest.mark.parametrize("version, recorded", [("7", True), ("untracked", False), ("", False)])
def test_deploy_model_records_a_numbered_version_only(
    version: str, recorded: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A registry that cannot be reached is logged, not raised: the bento serves either way.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "not-a-uri")
    cluster = FakeCluster()
    info = deploy_model(
        "gs://planets-artifacts/bentos/v1.bento",
        {"bento_tag": "planets_classifier:v1"},
        IMAGE,
        registered_model_name="planets-classifier",
        registered_version=version,
        api=cluster,
        predict=Predictor(),
    )
    assert info["revision"] == "1" and info["serving_image"] == IMAGE
    assert ("could not record it in the registry" in caplog.text) is recorded


def test_first_deploy_applies_waits_and_smoke_tests() -> None:
    cluster, predictor = FakeCluster(), Predictor()
    result = run_deploy(cluster, make_spec(), predictor)
    assert result.changed is True
    assert result.revision == "1"
    assert result.kind == "Deployment"
    assert result.bento_tag == "planets_classifier:v1"
    assert result.endpoint_url == "http://planets-classifier.planets-serving.svc.cluster.local:3000"
    assert [o["kind"] for o in cluster.applied] == ["Deployment", "Service"]
    url, image = predictor.calls[0]
    assert url == result.endpoint_url
    assert image[:3] == b"\xff\xd8\xff"  # a real JPEG made in-process
    annotations = cluster.deployment()["metadata"]["annotations"]
    assert annotations[manifests.SPEC_HASH_ANNOTATION] == result.spec_hash


def test_same_bento_twice_changes_nothing() -> None:
    cluster = FakeCluster()
    first = run_deploy(cluster, make_spec())
    cluster.calls.clear()
    applied_before = len(cluster.applied)
    predictor = Predictor()
    second = run_deploy(cluster, make_spec(), predictor)
    assert second.changed is False
    assert (second.revision, second.spec_hash, second.endpoint_url) == (
        first.revision,
        first.spec_hash,
        first.endpoint_url,
    )
    assert len(cluster.applied) == applied_before
    assert all(call[0] == "get" for call in cluster.calls)
    assert predictor.calls == []


def test_new_bento_rolls_forward_to_next_revision() -> None:
    cluster = FakeCluster()
    run_deploy(cluster, make_spec("planets_classifier:v1"))
    result = run_deploy(cluster, make_spec("planets_classifier:v2"))
    assert result.changed is True
    assert result.revision == "2"
    assert env_of(cluster.deployment())["BENTO_TAG"] == "planets_classifier:v2"


def test_replica_change_is_a_change_without_new_pods() -> None:
    cluster = FakeCluster()
    first = run_deploy(cluster, make_spec())
    second = run_deploy(cluster, make_spec(replicas=2))
    assert second.changed is True
    assert second.spec_hash != first.spec_hash
    assert second.revision == first.revision  # same pod template, same revision


def test_kserve_inference_service_endpoint_from_status() -> None:
    cluster = FakeCluster()
    result = run_deploy(cluster, make_spec(kserve=True))
    assert result.kind == "InferenceService"
    assert [o["kind"] for o in cluster.applied] == ["InferenceService"]
    assert result.endpoint_url == "http://planets-classifier-predictor.planets-serving.svc.cluster.local"
    again = run_deploy(cluster, make_spec(kserve=True))
    assert again.changed is False


# -- bad input: rejected before any API call ------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "name", "fix_word"),
    [
        ({"bento_uri": ""}, "bento.uri", "Connect"),
        ({"bento_uri": "/tmp/local/model.bento"}, "bento.uri", "gs:// pipeline root"),
        ({"bento_tag": ""}, "bento_tag", "metadata['bento_tag']"),
        ({"bento_tag": "NoVersion"}, "bento_tag", "metadata['bento_tag']"),
    ],
)
def test_missing_bento_is_rejected_before_contacting_the_cluster(
    overrides: dict[str, Any], name: str, fix_word: str
) -> None:
    cluster = FakeCluster()
    with pytest.raises(InvalidParameterError) as info:
        run_deploy(cluster, make_spec(**overrides))
    message = str(info.value)
    assert name in message
    assert repr(next(iter(overrides.values()))) in message
    assert fix_word in message
    assert cluster.calls == []


@pytest.mark.parametrize(
    "image",
    [
        "europe-docker.pkg.dev/proj/planets/Serving:0.1.0",  # upper-case repository
        "europe-docker.pkg.dev/proj/planets/serving",  # no tag means :latest
        "ghcr.io/planets-mlops/serving:latest",
        "ghcr.io/planets-mlops/serving:0.1.0 ",
        "ghcr.io/planets-mlops/serving::0.1.0",
        "",
    ],
)
def test_bad_image_reference_is_rejected_before_applying(image: str) -> None:
    cluster = FakeCluster()
    with pytest.raises(InvalidParameterError) as info:
        run_deploy(cluster, make_spec(image=image))
    assert "serving_image" in str(info.value)
    assert repr(image) in str(info.value)
    assert cluster.calls == []


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/planets-mlops/serving:0.1.0",
        "localhost:5000/serving:0.1.0",
        "kind.local/planets/serving:0.1.0-rc1",
        "serving@sha256:" + "a" * 64,
        "europe-docker.pkg.dev/proj/repo/serving:0.1.0@sha256:" + "b" * 64,
    ],
)
def test_good_image_references_pass(image: str) -> None:
    assert manifests.validate_image(image) == image


def test_non_positive_timeout_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="timeout_s"):
        run_deploy(FakeCluster(), make_spec(), timeout_s=0)


# -- failures after the apply: rollback -----------------------------------------------


def test_rollout_timeout_on_first_deploy_deletes_what_it_created() -> None:
    cluster = FakeCluster({"planets_classifier:v1": "stuck"})
    with pytest.raises(DeployError) as info:
        run_deploy(cluster, make_spec(), timeout_s=30)
    message = str(info.value)
    assert "timeout_s=30" in message
    assert "old replicas pending termination" in message
    assert "deleted new Deployment" in message and "deleted new Service" in message
    assert "raise timeout_s" in message
    assert cluster.objects == {}


def test_rollout_timeout_restores_previous_revision() -> None:
    cluster = FakeCluster({"planets_classifier:v2": "stuck"})
    run_deploy(cluster, make_spec("planets_classifier:v1"))
    with pytest.raises(DeployError) as info:
        run_deploy(cluster, make_spec("planets_classifier:v2"), timeout_s=20)
    assert "rolled back (restored Deployment revision 1, restored Service)" in str(info.value)
    assert env_of(cluster.deployment())["BENTO_TAG"] == "planets_classifier:v1"
    restored = cluster.applied[-1]  # rollback goes in reverse: Service, then Deployment
    assert restored["kind"] == "Deployment"
    assert "resourceVersion" not in restored["metadata"]
    assert rollout.REVISION_ANNOTATION not in restored["metadata"]["annotations"]
    # The restored spec is the one deployed before, so deploying v1 again is a no-op.
    assert run_deploy(cluster, make_spec("planets_classifier:v1")).changed is False


def test_crash_looping_pod_rolls_back_with_the_pods_reason() -> None:
    cluster = FakeCluster({"planets_classifier:v2": "crashloop"})
    run_deploy(cluster, make_spec("planets_classifier:v1"))
    with pytest.raises(DeployError) as info:
        run_deploy(cluster, make_spec("planets_classifier:v2"), timeout_s=600)
    message = str(info.value)
    assert "CrashLoopBackOff" in message
    assert "last exit code 1" in message
    assert "pod planets-classifier-abc12" in message
    assert "kubectl -n planets-serving logs" in message
    assert "restored Deployment revision 1" in message
    assert env_of(cluster.deployment())["BENTO_TAG"] == "planets_classifier:v1"


@pytest.mark.parametrize("mode", ["pull-then-ready", "crash-then-ready"])
def test_a_pull_error_or_first_crash_is_waited_out_within_the_deadline(mode: str) -> None:
    cluster = FakeCluster({"planets_classifier:v2": mode})
    run_deploy(cluster, make_spec("planets_classifier:v1"))
    result = run_deploy(cluster, make_spec("planets_classifier:v2"), timeout_s=600)
    assert result.changed and env_of(cluster.deployment())["BENTO_TAG"] == "planets_classifier:v2"
    assert cluster.pod_reads["planets_classifier:v2"] > FakeCluster.FLAKY_POLLS
    assert not [call for call in cluster.calls if call == ("delete", "Deployment")]


def test_a_pull_error_that_never_passes_rolls_back_at_the_deadline_naming_it() -> None:
    cluster = FakeCluster({"planets_classifier:v2": "pullerror"})
    run_deploy(cluster, make_spec("planets_classifier:v1"))
    with pytest.raises(DeployError) as info:
        run_deploy(cluster, make_spec("planets_classifier:v2"), timeout_s=120)
    message = str(info.value)
    assert "not ready after timeout_s=120" in message and "ErrImagePull" in message
    assert env_of(cluster.deployment())["BENTO_TAG"] == "planets_classifier:v1"


def test_progress_deadline_exceeded_rolls_back() -> None:
    cluster = FakeCluster({"planets_classifier:v2": "deadline"})
    run_deploy(cluster, make_spec("planets_classifier:v1"))
    with pytest.raises(DeployError, match="progress deadline"):
        run_deploy(cluster, make_spec("planets_classifier:v2"))
    assert env_of(cluster.deployment())["BENTO_TAG"] == "planets_classifier:v1"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (DeployError("POST http://x/predict answered HTTP 500: boom"), "HTTP 500"),
        ({"error": "no model"}, "expected a 'prediction' string"),
        ({"prediction": "Mars", "probabilities": {"Mars": 0.2, "Earth": 0.1}}, "sum to 0.300"),
        ({"prediction": "Mars"}, "no 'probabilities'"),
        # What a diverged model answers, parsed the way predict() parses the body.
        (json.loads('{"prediction": "Mars", "probabilities": {"Mars": NaN, "Earth": NaN}}'), "finite"),
        ({"prediction": "Mars", "probabilities": {"Mars": float("inf"), "Earth": 0.0}}, "finite"),
        ({"prediction": "Mars", "probabilities": {"Mars": 1.5, "Earth": -0.5}}, "in [0, 1]"),
        ({"prediction": "Mars", "probabilities": {"Mars": "1.0"}}, "finite numbers"),
    ],
)
def test_failing_smoke_test_rolls_back(answer: Any, expected: str) -> None:
    cluster = FakeCluster()
    run_deploy(cluster, make_spec("planets_classifier:v1"))
    with pytest.raises(DeployError) as info:
        run_deploy(cluster, make_spec("planets_classifier:v2"), Predictor(answer))
    assert expected in str(info.value)
    assert "rolled back" in str(info.value)
    assert env_of(cluster.deployment())["BENTO_TAG"] == "planets_classifier:v1"


def test_rejected_apply_rolls_back_what_was_applied() -> None:
    cluster = FakeCluster()
    cluster.fail_apply_of = {"Service"}
    with pytest.raises(DeployError, match="admission webhook denied Service"):
        run_deploy(cluster, make_spec())
    assert cluster.objects == {}


def test_failed_rollback_is_reported_with_manual_fix() -> None:
    cluster = FakeCluster({"planets_classifier:v2": "stuck"})
    run_deploy(cluster, make_spec("planets_classifier:v1"))
    original_apply = cluster.apply

    def apply_then_break(obj: dict[str, Any]) -> dict[str, Any]:
        result = original_apply(obj)
        cluster.fail_apply_of = {"Deployment", "Service"}  # API goes away after the apply
        return result

    cluster.apply = apply_then_break  # type: ignore[method-assign]
    with pytest.raises(DeployError) as info:
        run_deploy(cluster, make_spec("planets_classifier:v2"), timeout_s=10)
    assert "ROLLBACK ALSO FAILED" in str(info.value)
    assert "rollout undo deployment/planets-classifier" in str(info.value)


# -- pure status readers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "generation", "done", "state"),
    [
        ({"observedGeneration": 1}, 2, False, "observe"),
        (
            {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 1, "availableReplicas": 1},
            2,
            False,
            "1 of 2 new",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 3, "availableReplicas": 2},
            2,
            False,
            "old replicas",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1},
            2,
            False,
            "1 of 2 updated",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2},
            2,
            True,
            "2 of 2",
        ),
    ],
)
def test_deployment_status(status: dict[str, Any], generation: int, done: bool, state: str) -> None:
    obj = {"metadata": {"generation": generation}, "status": status}
    got_done, got_state = rollout.deployment_status(obj, replicas=2)
    assert got_done is done
    assert state in got_state


def test_fatal_pod_reason_ignores_pods_that_are_only_starting() -> None:
    starting = {
        "metadata": {"name": "p"},
        "status": {
            "containerStatuses": [{"name": "bento", "state": {"waiting": {"reason": "ContainerCreating"}}}]
        },
    }
    pulling = {
        "metadata": {"name": "q"},
        "status": {
            "containerStatuses": [
                {
                    "name": "bento",
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "manifest unknown"}},
                }
            ]
        },
    }
    assert rollout.fatal_pod_reason([starting, {"metadata": {"name": "r"}}]) is None
    # A pull error may pass (the rollout waits it out); it is named when the deadline comes.
    assert rollout.fatal_pod_reason([starting, pulling]) is None
    assert rollout.fatal_pod_reason([starting, pulling], transient=True) == (
        "pod q container bento is ImagePullBackOff: manifest unknown"
    )
    bad_name = copy.deepcopy(pulling)
    bad_name["status"]["containerStatuses"][0]["state"]["waiting"] = {"reason": "InvalidImageName"}
    assert rollout.fatal_pod_reason([bad_name]) == "pod q container bento is InvalidImageName"


# -- the real HTTP smoke-test call, against a local server ------------------------------


class _PredictHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = (
            self.path == "/predict"
            and b'name="image"' in body
            and b"\xff\xd8\xff" in body
            and self.headers["Content-Type"].startswith("multipart/form-data; boundary=")
        )
        payload = json.dumps(GOOD_ANSWER if ok else {"error": "bad request"}).encode()
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def predict_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PredictHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_predict_posts_multipart_jpeg_to_a_real_server(predict_server: str) -> None:
    answer = smoke.http_predict(predict_server, smoke.smoke_image(), 5)
    assert smoke.check_prediction(answer) == "Mars"


def test_http_predict_reports_http_errors(predict_server: str) -> None:
    with pytest.raises(DeployError, match="HTTP 400"):
        smoke.http_predict(predict_server, b"not a jpeg", 5)


def test_http_predict_reports_unreachable_endpoint() -> None:
    with pytest.raises(DeployError, match="failed"):
        smoke.http_predict("http://127.0.0.1:9", smoke.smoke_image(), 2)


# -- the real KubernetesApi, against a fake API server over HTTP ------------------------

_RESOURCES = {
    "/api/v1": [{"name": "services", "kind": "Service"}, {"name": "pods", "kind": "Pod"}],
    "/apis/apps/v1": [{"name": "deployments", "kind": "Deployment"}],
    "/apis/serving.kserve.io/v1beta1": [{"name": "inferenceservices", "kind": "InferenceService"}],
}


class _ApiServerHandler(BaseHTTPRequestHandler):
    """Discovery plus get/patch/delete/list for a few kinds: just enough for KubernetesApi."""

    store: dict[str, dict[str, Any]]
    requests: list[tuple[str, str, str, dict[str, Any]]]

    def _send(self, code: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self) -> None:
        self._send(
            404,
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404},
        )

    def do_GET(self) -> None:  # noqa: N802
        path, _, query = self.path.partition("?")
        self.requests.append(("GET", path, query, {}))
        if path == "/version":
            return self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0"})
        if path == "/api":
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            groups = [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                    "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                }
                for g, v in (("apps", "v1"), ("serving.kserve.io", "v1beta1"))
            ]
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if path in _RESOURCES:
            resources = [
                {**r, "namespaced": True, "singularName": "", "verbs": ["get", "list", "patch", "delete"]}
                for r in _RESOURCES[path]
            ]
            return self._send(
                200,
                {"kind": "APIResourceList", "groupVersion": path.split("/", 2)[-1], "resources": resources},
            )
        if path.endswith("/pods"):
            items = [o for o in self.store.values() if o["kind"] == "Pod"]
            return self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
        if path in self.store:
            return self._send(200, self.store[path])
        return self._not_found()

    def do_PATCH(self) -> None:  # noqa: N802
        path, _, query = self.path.partition("?")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(("PATCH", path, f"{query}|{self.headers['Content-Type']}", body))
        self.store[path] = {**body, "status": {}}
        self._send(200, self.store[path])

    def do_DELETE(self) -> None:  # noqa: N802
        path, _, query = self.path.partition("?")
        self.requests.append(("DELETE", path, query, {}))
        if self.store.pop(path, None) is None:
            return self._not_found()
        return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_api_server():
    """A FAKE API server (no Kubernetes API server runs on this machine) on 127.0.0.1."""
    handler = type("Handler", (_ApiServerHandler,), {"store": {}, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_kubernetes_api_speaks_server_side_apply(fake_api_server: Any, tmp_path: Any) -> None:
    from kubernetes import client

    host, handler = fake_api_server
    api = cluster.KubernetesApi(
        client.ApiClient(client.Configuration(host=host)), discovery_cache=str(tmp_path / "discovery.json")
    )
    deployment, service = manifests.desired_objects(make_spec())
    dep_path = "/apis/apps/v1/namespaces/planets-serving/deployments/planets-classifier"

    assert api.get("Deployment", "planets-serving", "planets-classifier") is None
    api.apply(deployment)
    api.apply(service)
    patches = [r for r in handler.requests if r[0] == "PATCH"]
    assert [p[1] for p in patches] == [
        dep_path,
        "/api/v1/namespaces/planets-serving/services/planets-classifier",
    ]
    for _, _, query_and_type, _body in patches:
        query, content_type = query_and_type.split("|")
        assert "fieldManager=planets-mlops" in query
        assert "force=True" in query or "force=true" in query
        assert content_type == "application/apply-patch+yaml"
    assert patches[0][3]["spec"] == deployment["spec"]
    got = api.get("Deployment", "planets-serving", "planets-classifier")
    assert got is not None and got["metadata"]["annotations"] == deployment["metadata"]["annotations"]

    handler.store["/api/v1/namespaces/planets-serving/pods/p1"] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p1"},
        "status": {},
    }
    pods = api.list_pods("planets-serving", manifests.pod_selector(make_spec()))
    assert [p["metadata"]["name"] for p in pods] == ["p1"]
    list_query = next(r[2] for r in handler.requests if r[1].endswith("/pods"))
    assert "labelSelector=" in list_query

    api.delete("Deployment", "planets-serving", "planets-classifier")
    api.delete("Deployment", "planets-serving", "planets-classifier")  # absent is fine
    assert api.get("Deployment", "planets-serving", "planets-classifier") is None


# -- rollback completeness and concurrent deploys -------------------------------------


def test_rollback_restores_every_object_even_when_one_fails() -> None:
    cluster = FakeCluster({"planets_classifier:v2": "stuck"})
    run_deploy(cluster, make_spec("planets_classifier:v1"))
    original_apply = cluster.apply

    def apply_then_reject_services(obj: dict[str, Any]) -> dict[str, Any]:
        result = original_apply(obj)
        if obj["kind"] == "Service":
            cluster.fail_apply_of = {"Service"}  # the rollback's Service apply is rejected
        return result

    cluster.apply = apply_then_reject_services  # type: ignore[method-assign]
    with pytest.raises(DeployError) as info:
        run_deploy(cluster, make_spec("planets_classifier:v2"), timeout_s=10)
    message = str(info.value)
    assert "ROLLBACK ALSO FAILED" in message and "could not restore Service" in message
    assert "restored Deployment revision 1" in message
    # The Deployment is back on the verified bento although the Service failed first.
    assert env_of(cluster.deployment())["BENTO_TAG"] == "planets_classifier:v1"


class BlockingPredictor(Predictor):
    """Holds the smoke test until ``release`` is set, to keep a deploy in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, url: str, image: bytes, timeout_s: float) -> dict[str, Any]:
        self.entered.set()
        assert self.release.wait(10), "the test never released the smoke test"
        return super().__call__(url, image, timeout_s)


def test_two_deploys_at_once_are_serialised_by_the_lease() -> None:
    cluster = FakeCluster()
    run_deploy(cluster, make_spec("planets_classifier:v1"))
    blocker = BlockingPredictor()
    outcome: dict[str, Any] = {}

    def deploy_a() -> None:
        try:
            outcome["a"] = run_deploy(cluster, make_spec("planets_classifier:v2"), blocker)
        except Exception as exc:  # noqa: BLE001 - checked below
            outcome["a"] = exc

    thread_a = threading.Thread(target=deploy_a)
    thread_a.start()
    assert blocker.entered.wait(10)
    applied_before_b = len(cluster.applied)

    def deploy_b() -> None:
        try:
            outcome["b"] = run_deploy(cluster, make_spec("planets_classifier:v3"), timeout_s=30)
        except Exception as exc:  # noqa: BLE001 - checked below
            outcome["b"] = exc

    thread_b = threading.Thread(target=deploy_b)
    thread_b.start()
    thread_b.join(10)
    assert not thread_b.is_alive()
    # B waited (on its own clock) while A held the lease, then gave up without applying.
    assert isinstance(outcome["b"], DeployError)
    assert "Another deploy of planets-serving/planets-classifier is in progress" in str(outcome["b"])
    assert len(cluster.applied) == applied_before_b
    blocker.release.set()
    thread_a.join(10)
    assert isinstance(outcome["a"], DeployResult) and outcome["a"].bento_tag == "planets_classifier:v2"
    assert env_of(cluster.deployment())["BENTO_TAG"] == "planets_classifier:v2"
    # The lease is released: B's retry goes through.
    assert run_deploy(cluster, make_spec("planets_classifier:v3")).bento_tag == "planets_classifier:v3"
    assert ("Lease", "planets-serving", "planets-classifier-deploy") not in cluster.objects


def test_a_deploy_never_reports_success_on_another_writers_rollout() -> None:
    cluster = FakeCluster({"planets_classifier:v2": "stuck"})
    run_deploy(cluster, make_spec("planets_classifier:v1"))
    other = manifests.desired_objects(make_spec("planets_classifier:v3"))
    clock = FakeClock()

    def sleep_while_another_writer_applies(seconds: float) -> None:
        # Someone outside this deploy's lease (kubectl, another tool) applies v3 meanwhile.
        if clock.now == 0:
            writer = threading.Thread(target=lambda: [cluster.apply(obj) for obj in other])
            writer.start()
            writer.join(10)
        clock.sleep(seconds)

    with pytest.raises(rollout.SupersededError, match=r"changed by another writer during the rollout"):
        deploy(
            make_spec("planets_classifier:v2"),
            cluster,
            timeout_s=60,
            predict=Predictor(),
            poll_s=5,
            clock=clock,
            sleep=sleep_while_another_writer_applies,
        )
    # Not rolled back over the other writer's spec either.
    assert env_of(cluster.deployment())["BENTO_TAG"] == "planets_classifier:v3"


def test_an_expired_lease_of_a_dead_deploy_is_taken_over() -> None:
    cluster = FakeCluster()
    cluster.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "planets-classifier-deploy", "namespace": "planets-serving"},
            "spec": {
                "holderIdentity": "deploy-pod-that-died",
                "leaseDurationSeconds": 60,
                "acquireTime": "2020-01-01T00:00:00.000000Z",
                "renewTime": "2020-01-01T00:00:00.000000Z",
            },
        }
    )
    assert run_deploy(cluster, make_spec("planets_classifier:v1")).changed is True
    assert ("Lease", "planets-serving", "planets-classifier-deploy") not in cluster.objects
