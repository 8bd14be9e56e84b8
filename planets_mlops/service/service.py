"""The BentoML service of the planets classifier (``planets_mlops.service.service:PlanetClassifier``).

Routes:
    POST /predict        one image (multipart field ``image``, or a raw image body)
    POST /predict_batch  several ``image`` fields, one model call
    GET  /metadata       model tag, data revision, classes, metrics, preprocessing, and this
                         worker's prediction-record counts (``monitoring``)
    GET  /livez, /readyz BentoML's probes

Fast path, as measured on 2 cores (docs/serving.md): ONNX Runtime with one thread, async
APIs that return a Starlette ``JSONResponse``, BentoML metrics and access log off unless
asked for, uvloop + httptools installed. The request body is parsed by our own input spec
(:class:`ImageUpload`), so every malformed request becomes a 4xx with a message instead
of a BentoML 500. onnxruntime is imported in ``__init__`` only: the ``bentoml serve``
supervisor imports this module as well and must stay light.

Limits (docs/serving.md, "Limits"): connection heads (:mod:`.protocol`), bodies
(:mod:`.uploads`), pixels and decode time (:mod:`.decoding`), image size and format
(:mod:`planets_mlops.imaging`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, ClassVar

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from planets_mlops.errors import InvalidParameterError
from planets_mlops.metric_names import current as current_metric_names
from planets_mlops.service import listening, protocol
from planets_mlops.service.settings import ServingSettings
from planets_mlops.service.uploads import UploadError, UploadGate, read_uploads

logger = logging.getLogger(__name__)


def _worker_index() -> int | None:
    """This BentoML worker's index (1, 2, ...), or None outside a worker."""
    from bentoml._internal.context import server_context

    index = getattr(server_context, "worker_index", None)
    return index if isinstance(index, int) else None


MODEL_NAME = "planets-classifier"
SERVICE_NAME = "planets_classifier"
try:
    SETTINGS = ServingSettings.from_env()
except InvalidParameterError as exc:
    # BentoML hides an import error behind "No module named ..."; say it where it shows.
    print(f"planets_classifier: bad serving setting: {exc}", file=sys.stderr, flush=True)
    raise
protocol.install(SETTINGS)
# In a worker other than the first: a listening socket of its own, so that the kernel
# spreads connections over the workers (listening.py); elsewhere nothing.
listening.spread_connections(_worker_index(), sys.argv)
UPLOADS = UploadGate(SETTINGS.uploads_in_flight)
# At shutdown the record writer and the inbox get this long to write what they hold.
SHUTDOWN_FLUSH_S = 10.0


class ImageUpload(bentoml.IODescriptor):
    """Input of ``/predict``: raw image files, parsed by us rather than by BentoML.

    BentoML's own multipart handling answers 500 to a wrong field name or a non-image
    file; parsing here turns every such case into an ``UploadError`` the API answers
    with a 4xx.
    """

    max_images: ClassVar[int] = 1
    # What the OpenAPI page documents: the multipart form the service parses, not this model's
    # fields (BentoML would show them as a JSON body, which the service answers with 415).
    media_type: ClassVar[str | None] = "multipart/form-data"
    images: list[bytes] = []
    error: dict | None = None

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The request's form as OpenAPI shows it: ``image`` file field(s).

        Returns:
            A JSON schema of the multipart form (one ``image`` file; several for a batch).
        """
        one = {"type": "string", "format": "binary", "description": "a JPEG, PNG, GIF or BMP file"}
        if cls.max_images == 1:
            image: dict[str, Any] = {**one, "description": "the image to classify (JPEG, PNG, GIF or BMP)"}
        else:
            image = {
                "type": "array",
                "items": one,
                "maxItems": cls.max_images,
                "description": f"up to {cls.max_images} images, each its own `image` field, answered in "
                "order",
            }
        return {
            "title": cls.__name__,
            "type": "object",
            "properties": {"image": image},
            "required": ["image"],
            "description": "multipart/form-data with the file field `image`; or, for /predict, the raw "
            "file as the body with Content-Type image/jpeg, image/png or application/octet-stream.",
        }

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> ImageUpload:
        """Parse the request's image fields; a refusal is kept in ``error`` for the API to answer.

        Args:
            request: The incoming HTTP request.
            serde: BentoML's serializer (unused: the body is parsed here).

        Returns:
            The images, or an ``error`` body with its 4xx status when the request is refused
            (too large, too slow, busy, not an image, wrong field name, or more images than
            ``max_images``).
        """
        uploads = await read_uploads(
            request,
            SETTINGS.max_upload_bytes,
            cls.max_images,
            body_timeout_s=SETTINGS.body_timeout_s,
            gate=UPLOADS,
        )
        if uploads.error is None and len(uploads.images) > cls.max_images:
            uploads.error = UploadError(
                400,
                f"Send one image to /predict (got {len(uploads.images)}); use /predict_batch for several.",
            )
        error = None if uploads.error is None else uploads.error.body()
        # model_construct: the bytes are already checked; pydantic would copy them again.
        return cls.model_construct(images=uploads.images, error=error)


class ImageBatchUpload(ImageUpload):
    """Input of ``/predict_batch``: up to ``PLANETS_MAX_BATCH`` ``image`` fields."""

    max_images: ClassVar[int] = SETTINGS.max_batch


# Every field is parsed from the form here: none is a JSON part of it (BentoML would document
# the model's fields as JSON-encoded form parts).
for _upload in (ImageUpload, ImageBatchUpload):
    _upload.multipart_fields = list(_upload.model_fields)


class Prediction(bentoml.IODescriptor):
    """Answer of ``/predict`` (documents the OpenAPI schema; the API returns JSON itself).

    ``prediction`` is ``None`` when the open-set guard does not recognise the image (its
    ``known_score`` is below ``known_threshold``); ``closest_class`` is the arg-max either way.
    """

    prediction: str | None
    closest_class: str
    probabilities: dict[str, float]
    recognised: bool | None = None
    known_score: float | None = None
    known_threshold: float | None = None


class BatchPrediction(bentoml.IODescriptor):
    """Answer of ``/predict_batch``, one entry per ``image`` field, in order."""

    predictions: list[dict[str, Any]]


_METADATA: dict[str, Any] = {}
# This worker's service instance, once BentoML has made it (for the fast path).
_INSTANCE: list[PlanetClassifier] = []
# The header BentoML's API wrapper adds to every answer of an API.
_SERVER_HEADER = f"BentoML Service/{SERVICE_NAME}"
_UNEXPECTED = {"error": "An unexpected error has occurred, please check the server log."}


class FastPredict:
    """ASGI middleware: ``POST /predict`` and ``/predict_batch`` straight to the service.

    BentoML's path for an API call (its router, the request context, the API wrapper that
    builds the input model, binds the method and adds headers and a background task) was
    ~10 % of a worker's CPU at ~1,000 requests/s; everything it does for these two routes
    is done here or not needed (no ``ctx`` parameter, no batching, the form closed by
    :func:`read_uploads`). The answer is the same: :meth:`PlanetClassifier._answer` with
    the same input parsing, refusals and headers (``Server``, ``Retry-After``), and an
    unexpected error is BentoML's 500. It sits inside BentoML's traffic timeout (504) and
    is installed only while BentoML's metrics, access log and tracing are off (each needs
    BentoML's own path); ``tests/servers/test_service.py`` sends every refusal to both.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Answer the two POST routes here; pass everything else to BentoML."""
        route = _FAST_ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST" or not _INSTANCE:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        if request.headers.get("content-type", "").split(";")[0].strip() == "application/vnd.bentoml+pickle":
            await self.app(scope, receive, send)  # BentoML's own refusal of its pickle format
            return
        try:
            upload = await route.from_http_request(request, None)
            # By the route, not by max_images: PLANETS_MAX_BATCH=1 still answers {"predictions": [...]}.
            batch = route is ImageBatchUpload
            response = await _INSTANCE[0]._answer(upload.images, upload.error, batch=batch)
        except Exception:
            logger.exception("Exception on %s", scope["path"])
            response = JSONResponse(_UNEXPECTED, status_code=500)
        response.headers["server"] = _SERVER_HEADER
        await response(scope, receive, send)


# This worker's record writer (PLANETS_MONITORING_URI set), for its counts in /metadata.
_MONITOR: list[Any] = []


async def _metadata(_: Request) -> JSONResponse:
    monitoring = _MONITOR[0].stats() if _MONITOR else None
    return JSONResponse({**_METADATA, "monitoring": monitoring})


# GET routes: BentoML APIs are POST only, so /metadata lives in a small mounted app.
metadata_app = Starlette(routes=[Route("/metadata", _metadata, methods=["GET"])])


@bentoml.service(
    name=SERVICE_NAME,
    workers=SETTINGS.workers,
    # BentoML answers 504 past this: keep it above everything a request may wait for.
    traffic={"timeout": SETTINGS.body_timeout_s + SETTINGS.decode_timeout_s + 10},
    metrics={"enabled": SETTINGS.metrics},
    logging={"access": {"enabled": SETTINGS.access_log}},
    # BentoML wraps every request in an OpenTelemetry span whatever its settings; with no
    # exporter nothing leaves the worker, yet the span, its context and the wrapped
    # send/receive were ~15 % of a worker's CPU at ~1,000 requests/s. Off: every URL is
    # excluded, BentoML's own switch (and its random X-BentoML-Request-ID header goes too).
    **({} if SETTINGS.tracing else {"tracing": {"excluded_urls": ".*"}}),
)
@bentoml.asgi_app(metadata_app, path="/")
class PlanetClassifier:
    """Classifies a planet photo into one of the classes the model was trained on.

    Each worker loads the stored model (``model.onnx``, ``classes.json``,
    ``preprocess.json``) once, at start, into an ONNX Runtime session with
    ``PLANETS_ORT_THREADS`` threads, and publishes its provenance at ``GET /metadata``.
    """

    model_ref = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        from planets_mlops.model_folder import LoadedModel
        from planets_mlops.service.coalesce import Coalescer
        from planets_mlops.service.decoding import Decoder

        # On an instance BentoML has already swapped the BentoModel for the stored Model.
        stored = getattr(self.model_ref, "stored", self.model_ref)
        info = stored.info
        folder = Path(stored.path)
        self.model = LoadedModel(folder, SETTINGS.ort_threads)
        self.classes = self.model.classes
        # The whole document: the preprocessing, and what training's augmentation changed.
        preprocess = self.model.preprocess
        self.config = self.model.config
        self.guard = self.model.guard
        self.decoder = Decoder(self.config, SETTINGS)
        # The requests ready in one turn of the event loop share one model and guard call; a
        # request running alone is answered at once.
        self.coalescer = Coalescer(self._results, alone=protocol.lone_request)
        from planets_mlops.inbox import writer_from_env

        # PLANETS_INBOX set: rejected and unsure inputs are kept for labelling (off the request path).
        self.inbox = writer_from_env(str(stored.tag))
        self.monitor = None
        if SETTINGS.monitoring_uri:
            from planets_mlops.monitoring.writer import RecordWriter

            # Prediction records, batched to the store by a background thread (docs/monitoring.md).
            self.monitor = RecordWriter(SETTINGS.monitoring_uri, str(stored.tag), SETTINGS.monitoring())
            _MONITOR[:] = [self.monitor]
            logger.info(
                "Monitoring on: records of %s to %s (%s)",
                stored.tag,
                SETTINGS.monitoring_uri,
                SETTINGS.monitoring(),
            )
        _INSTANCE[:] = [self]
        _METADATA.update(
            {
                "model_tag": str(stored.tag),
                "data_revision": info.labels.get("data_revision", "unknown"),
                "data_content_hash": info.labels.get("data_content_hash", ""),
                "data_base_commit": info.labels.get("data_base_commit", ""),
                "model_uri": info.labels.get("model_uri", ""),
                "classes": self.classes,
                # A bento packaged before one name per quantity has val_acc...
                "metrics": current_metric_names(info.metadata.get("metrics") or {}),
                "preprocess": preprocess,
                "input_shape": list(self.config.input_shape),
                "guard": self.guard.describe() if self.guard else None,
            }
        )
        logger.info("Loaded %s (%d classes) from %s", stored.tag, len(self.classes), folder)

    def _results(self, batch: Any) -> tuple[list[dict[str, Any]], Any]:
        """The answers for the rows of the model batch, and the guard's embeddings of them.

        The place to add per-image fields; the embeddings are None without a guard.
        """
        # Row by row: an image gets the same bits alone, in a batch or coalesced.
        return self.model.answer(batch, row_by_row=True)

    @bentoml.on_shutdown
    def close_writers(self) -> None:
        """Write what the record writer and the inbox hold before the worker exits (SIGTERM).

        The decode children are killed first: their work has no one left to answer.
        """
        self.decoder.close()
        if self.monitor is not None:
            self.monitor.close(timeout=SHUTDOWN_FLUSH_S)
        if self.inbox is not None:
            self.inbox.close(timeout=SHUTDOWN_FLUSH_S)

    @staticmethod
    def _refusal(error: UploadError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers())

    async def _answer(self, images: list[bytes], error: dict | None, batch: bool) -> JSONResponse:
        from planets_mlops.service.decoding import Refused

        if error is not None:
            headers = {"Retry-After": "1"} if int(error["status"]) == 429 else None
            return JSONResponse(error, status_code=int(error["status"]), headers=headers)
        try:
            tensors = await self.decoder.batch(images)
        except Refused as exc:
            return self._refusal(exc.error)
        # The model and the guard (~0.5 ms for one 32x32 input, ~0.2 ms an image in a batch
        # of 8) run on the event loop, once for every request ready in this turn of it: a
        # thread hop would cost more.
        results, embeddings = await self.coalescer.answer(tensors)
        if self.inbox is not None:
            self.inbox.offer(images, results)
        if self.monitor is not None:
            # Constant time and never raises: features are computed by the writer's thread.
            self.monitor.offer(tensors, results, embeddings)
        return JSONResponse({"predictions": results} if batch else results[0])

    @bentoml.api(route="/predict", input_spec=ImageUpload, output_spec=Prediction)
    async def predict(self, images: list[bytes], error: dict | None = None) -> JSONResponse:
        """Classify one image: prediction (None when not recognised), closest class, scores."""
        return await self._answer(images, error, batch=False)

    @bentoml.api(route="/predict_batch", input_spec=ImageBatchUpload, output_spec=BatchPrediction)
    async def predict_batch(self, images: list[bytes], error: dict | None = None) -> JSONResponse:
        """Classify several ``image`` fields in one model call: ``{"predictions": [...]}``."""
        return await self._answer(images, error, batch=True)


class _PlanetsService(type(PlanetClassifier)):  # type: ignore[misc]
    """The service with an OpenAPI page that lists ``/metrics`` only when metrics are on."""

    __slots__ = ()

    @property
    def openapi_spec(self) -> Any:
        """BentoML's page, without ``/metrics`` when ``PLANETS_METRICS`` is off (it answers 404)."""
        spec = super().openapi_spec
        if not SETTINGS.metrics:
            spec.paths.pop("/metrics", None)
        return spec


PlanetClassifier.__class__ = _PlanetsService  # type: ignore[method-assign]  # same slots: safe

_FAST_ROUTES: dict[str, type[ImageUpload]] = {"/predict": ImageUpload, "/predict_batch": ImageBatchUpload}
# BentoML's metrics, access log and tracing see a request only on BentoML's own path.
FAST_PATH = not (SETTINGS.metrics or SETTINGS.access_log or SETTINGS.tracing)
if FAST_PATH:
    PlanetClassifier.add_asgi_middleware(FastPredict)  # type: ignore[attr-defined]  # a bentoml.Service
