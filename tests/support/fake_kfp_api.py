"""A FAKE of the Kubeflow Pipelines v2beta1 REST API, for CLI tests only.

No KFP backend runs on this machine, so the CLI is tested at the HTTP boundary: a small
real HTTP server on 127.0.0.1 (stdlib ``http.server`` in a thread) answering just the
endpoints ``kfp.Client`` calls for upload, run, schedule and status, keeping state in
memory and recording every request so tests can assert on the exact bodies. It is not a
KFP: no validation beyond what the tests need, no execution, no MLMD.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from planets_mlops.app.params import load_ir_documents

API = "/apis/v2beta1"
NOW = "2026-11-23T10:00:00Z"


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]  # names lower-cased


@dataclass
class FakeKfpState:
    """In-memory objects plus switches the tests flip."""

    token: str | None = None  # when set, requests need "Authorization: Bearer <token>"
    multi_user: bool = False
    reject_after: int | None = None  # answer 401 once this many requests were served
    stall_after: int | None = None  # then hang (stall_seconds) instead of answering
    stall_seconds: float = 3.0
    # Hold each GET /recurringruns until this many recurring runs were created (lets two
    # concurrent `schedule` calls interleave the same way every time).
    hold_recurring_list_until: int | None = None
    recurring_created: int = 0  # POST /recurringruns answered (not just received)
    # States successive GET /runs/<id> answers move the run through (then it stays put).
    run_states: list[str] = field(default_factory=list)
    # Task details (v2beta1 PipelineTaskDetail dicts) successive GET /runs/<id> answers carry,
    # popped along with run_states (then the last stays).
    run_tasks: list[list[dict[str, Any]]] = field(default_factory=list)
    echo_credentials: bool = False  # error bodies quote the auth headers, as some proxies do
    run_created: str | None = None  # creation time of new runs (default NOW)
    requests: list[Recorded] = field(default_factory=list)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    recurring: dict[str, dict[str, Any]] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self, kind: str) -> str:
        return f"{kind}-{next(self.ids)}"

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        """Recorded requests whose method matches and path matches ``pattern`` (regex)."""
        return [r for r in self.requests if r.method == method and re.fullmatch(API + pattern, r.path)]


def _display_filter(query: dict[str, str]) -> str | None:
    raw = query.get("filter")
    if not raw:
        return None
    for pred in json.loads(raw).get("predicates", []):
        if pred.get("key") in ("display_name", "name"):
            return pred.get("stringValue") or pred.get("string_value")
    return None


def _multipart_file(content_type: str, body: bytes) -> bytes:
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            return part.get_payload(decode=True)
    raise ValueError("no uploadfile part")


def _handler(state: FakeKfpState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Keep-alive answers are written as headers, then body: with Nagle's algorithm the
        # body waited for the client's delayed ACK of the headers, 40 ms on every request.
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            if state.echo_credentials:
                message += (
                    f" (request had Authorization: {self.headers.get('Authorization')}; "
                    f"Cookie: {self.headers.get('Cookie')})"
                )
            self._send(status, {"code": status, "message": message})

        def _dispatch(self, method: str) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            ctype = self.headers.get("Content-Type", "")
            if ctype.startswith("multipart/"):
                body: Any = {"uploadfile": _multipart_file(ctype, raw)}
            else:
                body = json.loads(raw) if raw else None
            state.requests.append(
                Recorded(
                    method,
                    url.path,
                    query,
                    body,
                    {k.lower(): v for k, v in self.headers.items()},
                )
            )
            if state.stall_after is not None and len(state.requests) > state.stall_after:
                time.sleep(state.stall_seconds)
                return
            expired = state.reject_after is not None and len(state.requests) > state.reject_after
            if expired or (
                state.token is not None and (self.headers.get("Authorization") != f"Bearer {state.token}")
            ):
                self._error(401, "Unauthorized: token expired or invalid")
                return
            if state.hold_recurring_list_until is not None and (method, url.path) == (
                "GET",
                API + "/recurringruns",
            ):
                deadline = time.monotonic() + 60
                # Counted once created, not when received: a listing released by a POST still
                # being handled would miss that recurring run.
                while state.recurring_created < state.hold_recurring_list_until:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
            try:
                status, payload = route(state, method, url.path, query, body)
            except KeyError as exc:
                status, payload = 404, {"code": 404, "message": f"not found: {exc}"}
            if status >= 400:
                self._error(status, payload["message"])
                return
            self._send(status, payload)

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

    return Handler


def _page(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {key: items, "total_size": len(items)} if items else {"total_size": 0}


def _paged(items: list[dict[str, Any]], key: str, query: dict[str, str]) -> dict[str, Any]:
    """One page (``page_size``, ``page_token`` = offset), with ``next_page_token`` when more."""
    if "page_size" not in query:
        return _page(items, key)
    start, size = int(query.get("page_token") or 0), int(query["page_size"])
    page = _page(items[start : start + size], key)
    page["total_size"] = len(items)
    if start + size < len(items):
        page["next_page_token"] = str(start + size)
    return page


def _later(seconds: int) -> str:
    """``NOW`` plus ``seconds``: uploads get distinct creation times, in order."""
    return f"2026-11-23T{10 + seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"


def _substring_filter(query: dict[str, str]) -> str | None:
    raw = query.get("filter")
    if not raw:
        return None
    for pred in json.loads(raw).get("predicates", []):
        if pred.get("operation") == "IS_SUBSTRING" and pred.get("key") in ("display_name", "name"):
            return pred.get("stringValue") or pred.get("string_value")
    return None


def _needs_namespace(state: FakeKfpState, namespace: str | None) -> tuple[int, Any] | None:
    """Multi-user KFP refuses experiments without a namespace (run_server.go, experiment_server.go)."""
    if state.multi_user and not namespace:
        return 400, {
            "code": 3,
            "message": "Invalid input error: an experiment cannot have an empty namespace",
        }
    return None


def route(state: FakeKfpState, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
    """The fake's whole API surface."""
    p = path.removeprefix(API)
    name = _display_filter(query)

    if method == "GET" and p == "/healthz":
        return 200, {"multi_user": state.multi_user}

    if p == "/pipelines" and method == "GET":
        items = [x for x in state.pipelines.values() if name is None or x["display_name"] == name]
        return 200, _page(items, "pipelines")
    if p == "/pipelines" and method == "POST":
        pid = state.new_id("pipeline")
        state.pipelines[pid] = {**body, "pipeline_id": pid, "created_at": NOW}
        return 200, state.pipelines[pid]
    m = re.fullmatch(r"/pipelines/([^/]+)", p)
    if m and method == "GET" and m[1] in state.pipelines:
        return 200, state.pipelines[m[1]]
    if p == "/pipelines/upload_version" and method == "POST":
        pid = query["pipelineid"]
        if pid not in state.pipelines:
            return 404, {"code": 404, "message": f"pipeline {pid} not found"}
        vid = state.new_id("version")
        docs = load_ir_documents(body["uploadfile"])
        state.versions[vid] = {
            "pipeline_id": pid,
            "pipeline_version_id": vid,
            "display_name": query["name"],
            "description": query.get("description"),
            "created_at": _later(len(state.versions)),
            "pipeline_spec": docs[0]
            if len(docs) == 1
            else {"pipeline_spec": docs[0], "platform_spec": docs[1]},
        }
        return 200, state.versions[vid]
    m = re.fullmatch(r"/pipelines/([^/]+)/versions", p)
    if m and method == "GET":
        items = [
            {k: v for k, v in x.items() if k != "pipeline_spec"}
            for x in state.versions.values()
            if x["pipeline_id"] == m[1]
        ]
        # Like the API server: oldest first unless sort_by says "desc", page by page.
        items.sort(key=lambda x: (x["created_at"], x["pipeline_version_id"]),
                   reverse=query.get("sort_by", "").endswith(" desc"))  # fmt: skip
        return 200, _paged(items, "pipeline_versions", query)
    m = re.fullmatch(r"/pipelines/([^/]+)/versions/([^/]+)", p)
    if m and method == "GET":
        return 200, state.versions[m[2]]

    if p == "/experiments" and method == "GET":
        if refused := _needs_namespace(state, query.get("namespace")):
            return refused
        items = [
            x for x in state.experiments.values()
            if (name is None or x["display_name"] == name)
            and (not state.multi_user or x.get("namespace") == query.get("namespace"))
        ]  # fmt: skip
        return 200, _page(items, "experiments")
    if p == "/experiments" and method == "POST":
        # Like the KFP API server: experiment names are unique per namespace.
        namespace = body.get("namespace")
        if refused := _needs_namespace(state, namespace):
            return refused
        for existing in state.experiments.values():
            if existing["display_name"] == body["display_name"] and existing.get("namespace") == namespace:
                return 409, {"code": 6, "message": f"experiment {body['display_name']!r} already exists"}
        eid = state.new_id("experiment")
        state.experiments[eid] = {**body, "experiment_id": eid, "created_at": NOW}
        return 200, state.experiments[eid]

    if p == "/runs" and method == "POST":
        rid = state.new_id("run")
        state.runs[rid] = {**body, "run_id": rid, "state": "PENDING", "created_at": state.run_created or NOW}
        return 200, state.runs[rid]
    if p == "/runs" and method == "GET":
        part = _substring_filter(query)
        items = [
            x
            for x in state.runs.values()
            if ("experiment_id" not in query or x.get("experiment_id") == query["experiment_id"])
            and (part is None or part in x.get("display_name", ""))
        ]
        items = sorted(items, key=lambda x: x["created_at"], reverse=True)
        return 200, _page(items[: int(query.get("page_size", 10))], "runs")
    m = re.fullmatch(r"/runs/([^/:]+)", p)
    if m and method == "GET":
        run = state.runs[m[1]]
        if state.run_states:
            run["state"] = state.run_states.pop(0)
            if run["state"] == "FAILED":
                run["error"] = {"code": 2, "message": "train-model: exit code 1"}
        if state.run_tasks:
            run["run_details"] = {"task_details": state.run_tasks.pop(0)}
        return 200, run

    if p == "/recurringruns" and method == "POST":
        rid = state.new_id("recurring")
        state.recurring[rid] = {
            **body,
            "recurring_run_id": rid,
            "created_at": NOW,
            "status": "ENABLED",
        }
        state.recurring_created += 1
        return 200, state.recurring[rid]
    if p == "/recurringruns" and method == "GET":
        items = [
            x
            for x in state.recurring.values()
            if ("experiment_id" not in query or x.get("experiment_id") == query["experiment_id"])
            and (name is None or x["display_name"] == name)
        ]
        # The v2beta1 proto names this field recurringRuns (the others are snake_case);
        # kfp_server_api's model reads exactly that key.
        return 200, _page(items, "recurringRuns")
    m = re.fullmatch(r"/recurringruns/([^/:]+):disable", p)
    if m and method == "POST":
        state.recurring[m[1]]["mode"] = "DISABLE"
        return 200, {}
    m = re.fullmatch(r"/recurringruns/([^/:]+)", p)
    if m and method == "DELETE":
        del state.recurring[m[1]]
        return 200, {}
    return 404, {"code": 404, "message": f"fake has no route {method} {path}"}


@contextmanager
def serve_fake_kfp(
    state: FakeKfpState | None = None,
) -> Iterator[tuple[str, FakeKfpState]]:
    """Run the fake on a free port of 127.0.0.1; yields ``(base_url, state)``."""
    state = state or FakeKfpState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
