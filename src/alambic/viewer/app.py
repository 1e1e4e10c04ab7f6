"""The viewer's web app (starlette): read-only JSON endpoints and one static page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alambic.viewer import queries
from alambic.viewer.sources import Source, ViewerError

STATIC = Path(__file__).parent / "static"
PAGE_LIMIT_MAX = 1000


def create_app(source: Source, others: dict[str, Source] | None = None) -> Any:
    """A starlette app showing ``source``; ``others`` (label -> source) can be diffed with it.

    Queries read SQLite or Arrow files and run in starlette's thread pool, so a long scan
    (a filter over 100,000 rows) does not stall the other requests."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    others = dict(others or {})

    def _step(request: Request) -> str:
        step = request.query_params.get("step") or source.steps()[-1]
        if step not in source.steps():
            raise ViewerError(f"No step {step!r}; steps: {source.steps()}")
        return step

    def _int(request: Request, name: str, default: int, top: int | None = None) -> int:
        try:
            value = max(0, int(request.query_params.get(name, default)))
        except ValueError:
            raise ViewerError(f"{name} must be a whole number") from None
        return min(value, top) if top is not None else value

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def info(request: Request) -> Response:
        steps = source.steps()
        return JSONResponse(
            {
                "label": source.label,
                "pipeline": source.pipeline_name,
                "steps": [{"name": s, "rows": source.count(s)} for s in steps],
                "others": list(others),
            }
        )

    async def rows(request: Request) -> Response:
        q = request.query_params
        return JSONResponse(
            await run_in_threadpool(
                queries.rows_page,
                source,
                _step(request),
                _int(request, "offset", 0),
                _int(request, "limit", 50, PAGE_LIMIT_MAX),
                column=q.get("column") or None,
                value=q.get("value"),
                failure=q.get("failure") or None,
            )
        )

    async def row(request: Request) -> Response:
        step, index = _step(request), _int(request, "index", 0)
        return JSONResponse(await run_in_threadpool(queries.lineage, source, step, index))

    async def failures(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(queries.failures, source, _step(request)))

    async def plots(request: Request) -> Response:
        from alambic.viewer.plots import all_plots

        plots = await run_in_threadpool(all_plots, source, _step(request))
        return JSONResponse({"plots": plots})

    async def diff(request: Request) -> Response:
        name = request.query_params.get("other") or next(iter(others), "")
        if name not in others:
            raise ViewerError(f"Nothing to compare with {name!r}; choices: {list(others)}")
        step = _step(request)
        other = others[name]
        if step not in other.steps():
            raise ViewerError(f"{other.label} has no step {step!r}; it has {other.steps()}")
        return JSONResponse(await run_in_threadpool(queries.diff, other, source, step))

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    async def on_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/favicon.ico", favicon),
            Route("/api/info", info),
            Route("/api/rows", rows),
            Route("/api/row", row),
            Route("/api/failures", failures),
            Route("/api/plots", plots),
            Route("/api/diff", diff),
            Mount("/static", StaticFiles(directory=STATIC)),
        ],
        exception_handlers={ViewerError: on_error},
    )
    return app
