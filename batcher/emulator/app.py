"""The emulated Segmind HTTP API: its routes and handlers (the gateway's checks are in gateway.py)."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import re
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from aiohttp import web
from yarl import URL

from ..clock import Clock, SystemClock
from .catalog import InputError, canonical_input, check_inputs, input_hash, lookup
from .config import EmulatorConfig
from .faults import rate_limit_headers, server_error_body
from .gateway import ApiCall, api_route, json_error, plain_middleware
from .jobs import COMPLETED, FAILED, QUEUED, Job, RenderResult, owner_of
from .render import render_job
from .state import STATE, EmulatorState

_ASSET_NAME = re.compile(r"^\w[\w.-]*$")

log = logging.getLogger("batcher.emulator")


class RenderPool:
    """The app's render tasks: a task group open while the app runs, and a thread limit.

    One mutable object made with the app, because aiohttp freezes the app's mapping before
    ``cleanup_ctx`` opens the group.
    """

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._group: anyio.abc.TaskGroup | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Open the task group; on exit, cancel the renders still running.

        An error of the block comes out as itself, not in an exception group: renders do not
        raise (a failed render is a FAILED job), so the block's is the only error there is.
        """
        self._limiter = anyio.CapacityLimiter(self._threads)
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                try:
                    yield
                finally:
                    self._group = None
                    group.cancel_scope.cancel()
        except BaseExceptionGroup as errors:
            if len(errors.exceptions) == 1:
                raise errors.exceptions[0] from None
            raise

    def resume(self, state: EmulatorState) -> None:
        """Render again the jobs an earlier emulator on this state accepted but never rendered."""
        for job in state.store.unrendered():
            self.spawn(state, job, again=True)

    def spawn(self, state: EmulatorState, job: Job, *, again: bool = False) -> None:
        """Start rendering ``job``; the result lands in the store when done.

        ``again``: a job an earlier emulator accepted but did not finish rendering.
        """
        if self._group is None or self._limiter is None:
            raise RuntimeError("the emulator app is not running")
        self._group.start_soon(
            self._render, state, job, self._limiter, again, name=f"render {job.request_id}"
        )

    @staticmethod
    async def _render(state: EmulatorState, job: Job, limiter: anyio.CapacityLimiter, again: bool) -> None:
        result = await render_job(job, state.config, limiter)
        if again and result.error is not None:
            # Its input may have been a URL of the emulator that accepted it, gone since.
            result = RenderResult(error=f"{result.error} (rendering again after an emulator restart)")
        now = state.clock.monotonic()
        if state.saved is not None:
            # On disk before any poll can see it: a COMPLETED answer's files survive a crash.
            try:
                result = await state.saved.record_render(job, result, now)
            except OSError as exc:
                # Served from memory now; a restarted emulator renders it again.
                log.error("emulator: cannot keep the render of %s on disk: %s", job.request_id, exc)
        state.store.rendered(job, result, now)


RENDERS: web.AppKey[RenderPool] = web.AppKey("renders", RenderPool)


def _origin(request: web.Request, host: str | None = None) -> str:
    """scheme://host:port as the client addressed us (optionally under another hostname)."""
    if host is None:
        return f"{request.scheme}://{request.host}"
    return str(URL.build(scheme=request.scheme, host=host, port=request.url.explicit_port))


def _poll_origin(request: web.Request, config: EmulatorConfig) -> str:
    """Where poll_urls point: ``config.poll_origin`` when set, else the origin the client used."""
    if config.poll_origin is not None:
        return config.poll_origin.rstrip("/")
    return _origin(request)


# --- the API -------------------------------------------------------------------------------


async def submit(request: web.Request, call: ApiCall) -> web.StreamResponse:
    """``POST /workflows/{id}`` and ``/workflows/v2/{id}``: check, accept, queue, start the work."""
    state = call.state
    workflow = lookup(request.match_info["workflow_id"])
    if workflow is None:
        return json_error(404, "Workflow not found")
    if request.content_type != "application/json":
        return json_error(406, "Content-Type must be application/json")
    try:
        body = await request.json(loads=json.loads)
    except web.HTTPRequestEntityTooLarge:
        return json_error(413, "Request body too large")
    except (ValueError, UnicodeDecodeError):
        return json_error(400, "Request body is not valid JSON")
    try:
        inputs = check_inputs(workflow, body)
    except InputError as exc:
        return json_error(400, exc.message)

    if call.faults.failed_submit:
        # Refused in a 200: nothing queued, nothing billed, and no poll_url to follow.
        state.events["failed_submit"] += 1
        return web.json_response({"status": FAILED, "error": "Workflow could not be started for this input"})

    now = state.clock.monotonic()
    balance = state.store.balance(now)
    if balance is not None and balance < workflow.price:
        return json_error(
            406, f"Insufficient credits. Balance ${balance:.4f}, required ${workflow.price:.4f}"
        )
    digest = input_hash(canonical_input(workflow, inputs))
    job = state.store.submit(workflow, inputs, digest, call.api_key, now)
    try:
        # Durable before it is acknowledged: a restarted emulator must know every request_id.
        await state.remember(job)
    except OSError as exc:
        log.error("emulator: cannot record request %s, answering 500: %s", job.request_id, exc)
        state.store.withdraw(job)
        return json_error(500, "Internal Server Error: the request could not be recorded")
    request.app[RENDERS].spawn(state, job)

    if call.faults.lost:
        # Accepted (and to be billed), but the gateway lost the answer.
        state.events["lost"] += 1
        content_type, text = server_error_body(502)
        return web.Response(status=502, text=text, content_type=content_type)
    return web.json_response(
        {
            "message": "Request queued",
            "poll_url": f"{_poll_origin(request, state.config)}/workflows/request/{job.request_id}",
            "request_id": job.request_id,
            "status": QUEUED,
        }
    )


async def poll(request: web.Request, call: ApiCall) -> web.StreamResponse:
    """``GET /workflows/request/{request_id}``: the job's status, derived from the clock."""
    state = call.state
    request_id = request.match_info["request_id"]
    now = state.clock.monotonic()
    state.store.settle(now)
    job = state.store.get(request_id, now)
    # Another account's request is as unknown as one that never existed.
    if job is None or job.owner != owner_of(call.api_key):
        return json_error(404, f"Request {request_id} not found")
    status = job.status(now)
    if status == FAILED:
        return web.json_response(job.failure(), status=state.config.failed_http_status)
    if status == COMPLETED:
        output = await _output(request, state.config, job)
        if call.faults.garbled_output:
            state.events["garbled_output"] += 1
            text = output if isinstance(output, str) else json.dumps(output)
            output = text[: len(text) // 2]  # cut mid-answer: the outputs' JSON, unterminated
        return web.json_response({"status": COMPLETED, "output": output})
    if call.faults.odd_status:
        return web.json_response({"status": "STARTING"})
    if status == QUEUED:
        return web.json_response({"status": QUEUED})
    return web.json_response({"status": status, "output": ""})


async def _output(request: web.Request, config: EmulatorConfig, job: Job) -> Any:
    """The ``output`` field in the configured shape: a JSON string (list, flat or base64), or
    parsed. ``base64`` puts each file's bytes in the answer, as bare base64 (no ``data:``)."""
    origin = _origin(request, config.output_host)
    outputs = job.render.outputs if job.render is not None else ()
    if config.output_shape == "base64":
        datas = [
            await anyio.to_thread.run_sync(out.path.read_bytes) if out.path is not None else out.data
            for out in outputs
        ]
        entries = [
            {
                "keyname": job.workflow.output_key,
                "value": {"data": base64.b64encode(data).decode(), "type": "image"},
            }
            for data in datas
        ]
        return json.dumps(entries)
    urls = [f"{origin}/outputs/{job.request_id}/{out.name}" for out in outputs]
    if config.output_url_ttl is not None:  # signed, good until then (see emulator.signing)
        state = request.app[STATE]
        expires = math.ceil(state.clock.wall() + config.output_url_ttl)
        urls = [
            f"{url}?{state.url_signer.query(job.request_id, out.name, expires)}"
            for url, out in zip(urls, outputs, strict=True)
        ]
    if config.output_shape == "flat":
        return json.dumps({"image_output": urls[0] if urls else ""})
    entries = [{"keyname": job.workflow.output_key, "value": {"data": url, "type": "image"}} for url in urls]
    return entries if config.output_shape == "parsed" else json.dumps(entries)


# --- files ---------------------------------------------------------------------------------


async def output_file(request: web.Request) -> web.StreamResponse:
    """``GET /outputs/{request_id}/{name}``: an output file. No auth, as on a CDN."""
    state = request.app[STATE]
    found = state.store.output(
        request.match_info["request_id"], request.match_info["name"], state.clock.monotonic()
    )
    if found is None:
        return json_error(404, "Not Found")
    if state.config.output_url_ttl is not None:
        refused = state.url_signer.refusal(
            request.match_info["request_id"], request.match_info["name"], request.query, state.clock.wall()
        )
        if refused is not None:
            state.events["output_url_refused"] += 1
            return web.Response(status=403, text=refused, content_type="application/xml")
    wait = state.output_limiter.check("", state.clock.monotonic())
    if wait > 0.0:
        state.events["output_rate_limited"] += 1
        headers = rate_limit_headers(state.config.rate_header, wait, state.clock.wall())
        headers["Date"] = formatdate(state.clock.wall(), usegmt=True)  # the emulator's clock
        return json_error(429, "Too many downloads. Try again later.", headers)
    state.events["output_download"] += 1
    if "Authorization" in request.headers or "x-api-key" in request.headers:
        # A client must never send its key to the output host: the stats expose one that does.
        state.events["output_download_with_credentials"] += 1
    data = found.data
    if found.path is not None:
        try:
            data = await anyio.to_thread.run_sync(found.path.read_bytes)
        except OSError:
            return json_error(404, "Not Found")
    return web.Response(body=data, content_type=found.content_type)


async def asset(request: web.Request) -> web.StreamResponse:
    """``GET /assets/{name}``: a file of ``assets_dir``, so offline inputs can be http URLs."""
    folder = request.app[STATE].config.assets_dir
    name = request.match_info["name"]
    if folder is None or not _ASSET_NAME.match(name) or not (Path(folder) / name).is_file():
        return json_error(404, "Not Found")
    return web.FileResponse(Path(folder) / name)


async def stats(request: web.Request) -> web.StreamResponse:
    """``GET /_emulator/stats``: the introspection counters (see :meth:`EmulatorState.snapshot`)."""
    return web.json_response(request.app[STATE].snapshot())


# --- the application -----------------------------------------------------------------------


def create_app(
    config: EmulatorConfig | None = None,
    *,
    clock: Clock | None = None,
    state: EmulatorState | None = None,
    renders: RenderPool | None = None,
) -> web.Application:
    """The emulator as an aiohttp application (serve it with an ``AppRunner`` or ``web.run_app``).

    Pass ``state`` to share one store with the caller (as :func:`run_emulator` does); otherwise
    one is made from ``config`` and ``clock`` (default: a real clock). Pass ``renders`` to own its
    render task group (``async with renders.running()`` around serving); otherwise the app opens
    it in a ``cleanup_ctx``, which must then be entered and left in one task and one scope.
    """
    made_here = state is None
    if state is None:
        state = EmulatorState(config or EmulatorConfig(), clock or SystemClock())
    # A body may carry a data: URI of the largest accepted image (base64 is 4/3 of the bytes).
    max_body = state.config.max_input_bytes * 4 // 3 + 64 * 1024
    app = web.Application(middlewares=[plain_middleware], client_max_size=max_body)
    app[STATE] = state
    app[RENDERS] = renders or RenderPool(state.config.render_threads)
    if renders is None:
        app.cleanup_ctx.append(_render_group)
    if made_here:
        app.on_cleanup.append(_close_state)
    router = app.router
    router.add_post("/workflows/v2/{workflow_id}", api_route("submit", submit), name="submit_v2")
    router.add_post("/workflows/{workflow_id}", api_route("submit", submit), name="submit")
    router.add_get("/workflows/request/{request_id}", api_route("poll", poll), name="poll")
    router.add_get("/outputs/{request_id}/{name}", output_file, name="output")
    router.add_get("/assets/{name}", asset, name="asset")
    router.add_get("/_emulator/stats", stats, name="stats")
    return app


async def _render_group(app: web.Application) -> AsyncIterator[None]:
    """Own the render tasks for the app's lifetime (``cleanup_ctx``).

    Jobs taken over from an earlier emulator whose render never finished are rendered first.
    """
    renders, state = app[RENDERS], app[STATE]
    async with renders.running():
        renders.resume(state)
        yield


async def _close_state(app: web.Application) -> None:
    """Release the state folder of a state this app made (``on_cleanup``)."""
    app[STATE].close()
