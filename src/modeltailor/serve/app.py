"""The REST API of `tailor serve`: FastAPI routes over one predictor loaded at startup.

    POST /predict   multipart form, field `files` (repeat it for a batch), `?k=` top classes;
                    text runs also take a JSON body {"texts": [...]}, and a table (.csv, .tsv,
                    .jsonl, .xlsx) in `files` is one example per row
    GET  /health    liveness, and which backend answers
    GET  /metadata  labels, backbone, strategy, metrics.json, preprocessing, backend, limits
    GET  /docs, /openapi.json  (FastAPI)

Every error is JSON with a `detail` string: 413 body over the upload limit, 415 not a
multipart form or a part that is not an image, 422 a file that cannot be used (empty, corrupt,
truncated, decompression bomb) or a bad parameter, 400 a malformed form or too many files.
Anything unexpected is logged here and answered with a generic 500, never a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modeltailor._runtime import serve_malloc
from modeltailor.run import RunDir
from modeltailor.serve.backends import InputError, Predictor, load_predictor

DEFAULT_MAX_UPLOAD_BYTES = 20_000_000
#: Files per request: a batch is for convenience, not for shipping a dataset in one request.
MAX_FILES = 64
#: Examples per request (texts in a JSON body, rows of uploaded tables).
MAX_EXAMPLES = 1000

log = logging.getLogger("modeltailor.serve")


# -- response models (they are the OpenAPI schema too) ---------------------------------------
class Ranked(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    file: str
    label: str
    probability: float
    top_k: list[Ranked]


class Predictions(BaseModel):
    backend: str
    predictions: list[Prediction]


class Texts(BaseModel):
    """A JSON request body for text runs."""

    texts: list[str]


class Health(BaseModel):
    status: str
    backend: str


class Metadata(BaseModel):
    run: str
    modality: str
    backbone: str
    architecture: str | None
    strategy: str
    labels: list[str]
    metrics: dict[str, Any] | None
    preprocessing: dict[str, Any]
    calibration: dict[str, Any] | None
    backend: str
    model_file: str
    max_upload_bytes: int
    max_files: int


class FileProblem(BaseModel):
    file: str
    reason: str


class Error(BaseModel):
    detail: str
    files: list[FileProblem] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "malformed body, or too many files or texts"},
    413: {"model": Error, "description": "request body over the upload limit"},
    415: {"model": Error, "description": "not multipart/form-data, or a part is not an image"},
    422: {"model": Error, "description": "a file cannot be used, or a parameter is invalid"},
}


# -- errors ----------------------------------------------------------------------------------
class UploadRejected(Exception):
    """Uploads refused with one status; every problem is reported, each naming its file."""

    def __init__(self, status: int, problems: list[FileProblem]) -> None:
        super().__init__(status, problems)
        self.status = status
        self.problems = problems


async def _rejected(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UploadRejected)
    lines = [f"{p.file}: {p.reason}" for p in exc.problems]
    detail = lines[0] if len(lines) == 1 else f"{len(lines)} files refused: " + "; ".join(lines)
    files = [p.model_dump() for p in exc.problems]
    return JSONResponse({"detail": detail, "files": files}, status_code=exc.status)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's validation errors as one readable line (the inputs are not echoed back)."""
    assert isinstance(exc, RequestValidationError)
    parts = [
        f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in exc.errors()
    ]
    return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    """The client learns nothing about the server's insides; the log has the details."""
    log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return JSONResponse({"detail": "internal server error (details are in the server log)"}, 500)


class UploadLimit:
    """Refuse request bodies over `max_bytes` with a JSON 413, before they are parsed.

    A declared Content-Length is refused at once; a streamed (chunked) body is counted as it
    arrives. Starlette's own limiter answers in plain text, hence this small ASGI wrapper.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail = f"request body over the {max_bytes / 1e6:g} MB limit (--max-upload-mb)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": self.detail}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, self.detail)  # FastAPI answers it with its handler
            return message

        await self.app(scope, counted, send)


# -- routes ----------------------------------------------------------------------------------
router = APIRouter()


def _predictor(request: Request) -> Predictor:
    return request.app.state.predictor


def _mime(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _known_body(request: Request) -> None:
    """415 for anything but a multipart form, or JSON texts for a text run (before FastAPI
    reports a missing field)."""
    mime = _mime(request)
    if mime == "multipart/form-data":
        return
    predictor = _predictor(request)
    if mime == "application/json" and predictor.takes_texts:
        return
    also = " (or a JSON body {\"texts\": [...]})" if predictor.takes_texts else ""
    raise HTTPException(
        415,
        f"send {predictor.noun} as multipart/form-data in the field 'files'{also}, "
        f"not {mime or 'no type'}",
    )


async def _json_texts(request: Request) -> list[str] | None:
    """The texts of a JSON body, or None for a multipart form."""
    if _mime(request) != "application/json":
        return None
    try:
        body = await request.json()
    except ValueError as exc:
        raise HTTPException(400, "the body is not valid JSON") from exc
    if not isinstance(body, dict) or not isinstance(body.get("texts"), list):
        raise HTTPException(422, 'expected a JSON object {"texts": ["...", ...]}')
    texts = body["texts"]
    wrong = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if wrong:
        raise HTTPException(422, f"texts[{wrong[0]}] is not a string")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise HTTPException(422, f"texts[{empty[0]}] is empty: there is nothing to classify")
    return texts


@router.get("/health", response_model=Health)
def health(request: Request) -> Health:
    return Health(status="ok", backend=_predictor(request).backend)


@router.get("/metadata", response_model=Metadata)
def metadata(request: Request) -> Metadata:
    return request.app.state.metadata


@router.post(
    "/predict",
    response_model=Predictions,
    responses=ERRORS,
    dependencies=[Depends(_known_body)],
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": Texts.model_json_schema(),
                    "example": {"texts": ["where is my parcel?"]},
                }
            }
        }
    },
)
def predict(
    request: Request,
    files: Annotated[
        list[UploadFile] | None,
        File(description="images, clips or tables of texts; repeat the field for a batch"),
    ] = None,
    k: Annotated[int, Query(ge=1, description="classes ranked per example")] = 3,
    texts: Annotated[list[str] | None, Depends(_json_texts)] = None,
) -> Predictions:
    """Label, probability and top-k classes per example, in upload order (a table: one
    example per row, named `<file>:line N`; JSON texts: `text 1`, `text 2`...).

    A plain `def`: FastAPI runs it in its thread pool, so decoding and inference never block
    the event loop. One unusable file or row refuses the whole request (the answer lists it).
    """
    predictor = _predictor(request)
    if texts is not None:
        if not texts:
            raise HTTPException(422, "texts: give at least one text")
        if len(texts) > MAX_EXAMPLES:
            raise HTTPException(400, f"{len(texts)} texts: at most {MAX_EXAMPLES} per request")
        named = predictor.texts(texts) or []
    else:
        if not files:
            raise HTTPException(422, "files: give at least one file in the field 'files'")
        names = [f.filename or f"file {i + 1}" for i, f in enumerate(files)]
        named = _decode_all(predictor, files, names)
    if len(named) > MAX_EXAMPLES:
        raise HTTPException(400, f"{len(named)} examples: at most {MAX_EXAMPLES} per request")
    proba = predictor.probabilities([example for _, example in named])
    k = min(k, len(predictor.labels))
    rows = [_ranked(n, p, predictor.labels, k) for (n, _), p in zip(named, proba, strict=True)]
    return Predictions(backend=predictor.backend, predictions=rows)


def _decode_all(predictor: Predictor, files: list[UploadFile], names: list[str]) -> list:
    wrong = [
        FileProblem(
            file=n, reason=f"content type {f.content_type} is not accepted: send {predictor.noun}"
        )
        for n, f in zip(names, files, strict=True)
        if not predictor.accepts(f.content_type)
    ]
    if wrong:
        raise UploadRejected(415, wrong)
    named, problems = [], []
    for name, f in zip(names, files, strict=True):
        try:
            named.extend(predictor.examples(f.file.read(), name))
        except InputError as exc:
            problems.append(FileProblem(file=name, reason=str(exc)))
    if problems:
        raise UploadRejected(422, problems)
    return named


def _ranked(name: str, p: np.ndarray, labels: list[str], k: int) -> Prediction:
    order = np.argsort(-p)[:k]  # as ImageClassifier.predict_files ranks
    top = [Ranked(label=labels[i], probability=float(p[i])) for i in order]
    return Prediction(file=name, label=top[0].label, probability=top[0].probability, top_k=top)


# -- the app ---------------------------------------------------------------------------------
def run_metadata(run: RunDir, predictor: Predictor, max_upload_bytes: int) -> Metadata:
    """What a client needs to know about the model, read once from the run folder."""
    cfg = run.read_json("config.json")
    return Metadata(
        run=run.path.name,
        modality=cfg["modality"],
        backbone=cfg["backbone"],
        architecture=cfg.get("architecture"),
        strategy=cfg["strategy"],
        labels=predictor.labels,
        metrics=run.read_json("metrics.json") if run.has("metrics.json") else None,
        preprocessing=cfg["preprocessing"],
        calibration=cfg.get("calibration"),
        backend=predictor.backend,
        model_file=str(predictor.model_file.relative_to(run.path)),
        max_upload_bytes=max_upload_bytes,
        max_files=MAX_FILES,
    )


def create_app(
    run_path: str | Path,
    backend: str = "auto",
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> FastAPI:
    """The API for one run; the model is loaded here, once, before any request arrives.

    The process's malloc is switched to server mode first (`_runtime.serve_malloc`: one arena,
    freed memory handed back every few seconds), so its memory stays flat however long it runs.
    """
    from modeltailor import __version__

    serve_malloc()  # before the model and the inference threads allocate
    run = RunDir(run_path)
    predictor = load_predictor(run.path, backend)
    app = FastAPI(
        title=f"modeltailor: {run.path.name}",
        version=__version__,
        description=f"{predictor.modality} classifier ({predictor.backend}); see /metadata",
        form_limits={"max_files": MAX_FILES},
    )
    app.state.predictor = predictor
    app.state.metadata = run_metadata(run, predictor, max_upload_bytes)
    app.add_middleware(UploadLimit, max_bytes=max_upload_bytes)
    app.add_exception_handler(UploadRejected, _rejected)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _internal)
    app.include_router(router)
    return app
