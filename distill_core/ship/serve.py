"""The ``serve`` command: one model of a run over HTTP, on uvicorn, on PyTorch or ONNX Runtime.

    python -m distill_core serve RUN [--model student] [--backend torch|onnx|onnx-int8] [--port 8000]

It turns the flags into ``ServeSettings`` (``ship/serve_settings.py``), checks the run and the port, then runs the
app of ``ship/api.py`` (the endpoints, and how it behaves under load and bad input) until stopped. It listens on
127.0.0.1 unless ``--host`` says otherwise. A missing or damaged run, model or ONNX export, or a port that cannot be
listened on, is one line at start-up (exit code 2), before the port opens; a model that fails to load stops the
server and is one line too. The CLI (``distill_core/cli.py``) calls ``add_parser`` and ``run_command``.
"""

import argparse
import logging
import socket
from pathlib import Path

from ..config import MODEL_KINDS, runs_dir
from ..errors import ConfigError, ModelError
from .api import create_app, service_info
from .serve_settings import BACKENDS, ServeSettings

logger = logging.getLogger(__name__)

HELP = """Serve one model of a run over HTTP, on PyTorch or on its ONNX export.

  POST /predict        {"text": "..."}          -> label, confidence, every class's probability, tokens cut, latency
  POST /predict/batch  {"texts": ["...", ...]}  -> one such answer per text
  GET  /health         200 once the model is loaded (503 before)
  GET  /info           model, labels, max length, backend, parameters, test accuracy, limits
  GET  /               a page to try it;  GET /docs  the API docs (/openapi.json the schema)

Bad input gets a 4xx whose JSON "error" says what to fix. When every worker is busy and --queue requests wait,
more get 503 with Retry-After. A batch runs a few texts at a time, so single requests are not held up behind
it, and work for a client that has closed its connection is dropped. Texts longer than the model's max length
are truncated; answers say by how much.
The ONNX backends need `python -m distill_core export RUN --format onnx [--int8]` first."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """``serve RUN [--model student] [--backend torch|onnx|onnx-int8] [--host 127.0.0.1] [--port 8000] ...``."""
    d = ServeSettings()
    p = subparsers.add_parser("serve", help="serve one model of a run over HTTP (JSON API, a page to try it, docs)",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run id or folder")
    p.add_argument("--model", choices=MODEL_KINDS, default=d.model, help=f"which model ({d.model})")
    p.add_argument("--backend", choices=BACKENDS, default=d.backend,
                   help="torch: the saved model; onnx / onnx-int8: its export (`export RUN --format onnx [--int8]`)")
    p.add_argument("--host", default=d.host, help=f"address to listen on ({d.host}: this machine only)")
    p.add_argument("--port", type=int, default=d.port, help=f"port ({d.port})")
    p.add_argument("--max-chars", type=int, default=d.max_chars, help=f"characters per text ({d.max_chars})")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help=f"texts per batch request ({d.max_batch})")
    p.add_argument("--max-request-chars", type=int, default=d.max_request_chars,
                   help=f"characters of all the texts of one request together; more get 413 ({d.max_request_chars})")
    p.add_argument("--workers", type=int, default=d.workers, help=f"threads running the model ({d.workers})")
    p.add_argument("--queue", type=int, default=d.queue,
                   help=f"requests that may wait for a worker; more get 503 with Retry-After ({d.queue})")
    p.add_argument("--allow-origin", action="append", default=[], dest="allow_origins", metavar="ORIGIN",
                   help="allow browser pages from ORIGIN to call the API (CORS); repeat for several. Default: none")
    p.add_argument("--threads", type=int, help="model threads (default: one per core for torch, half the cores for "
                                               "ONNX Runtime, leaving the rest to HTTP and tokenising)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument("--device", help="where the torch backend runs the model: auto (the GPU when there is one), cpu, "
                   "cuda or cuda:N (auto); the ONNX backends run on the CPU")
    p.add_argument("--output-dir", help=f"runs folder (default {runs_dir()})")
    return p


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(model=args.model, backend=args.backend, host=args.host, port=args.port, max_chars=args.max_chars,
                         max_batch=args.max_batch, max_request_chars=args.max_request_chars, workers=args.workers,
                         queue=args.queue,
                         allow_origins=list(args.allow_origins), threads=args.threads,
                         access_log=args.access_log).validate()


def check_port(host: str, port: int) -> None:
    """ConfigError when ``host:port`` cannot be listened on (taken, or not an address of this machine)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"--host {host!r} is not an address of this machine ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            raise ConfigError(f"Cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None


def run_command(args: argparse.Namespace) -> int:
    import uvicorn

    from ..devices import scoring_device
    from .onnx_export import load_classifier
    from ..fingerprints import require_complete, standing
    from ..runs import resolve_run

    settings = settings_from_args(args)
    device = str(scoring_device(getattr(args, "device", None)))  # a GPU asked for where there is none: refused now
    run_dir = resolve_run(args.run, Path(args.output_dir) if args.output_dir else None)
    about = service_info(run_dir, settings.model, settings.backend)
    require_complete(run_dir, f"serve the {settings.model} of {run_dir.name}")  # not while it trains, nor damaged
    for problem in standing(run_dir).problems:  # test figures of other weights are not the served model's
        about.update(test_accuracy=None, test_macro_f1=None)
        logger.warning("%s; /info leaves the test figures out until then.", problem)
    check_port(settings.host, settings.port)
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("Listening on %s: other machines can reach this server, and it has no authentication.",
                       settings.host)
    server: uvicorn.Server | None = None

    def stop(message: str) -> None:  # the message is raised below, once the server has closed
        if server is not None:
            server.should_exit = True

    app = create_app(about, settings, load=lambda: load_classifier(run_dir, settings.model, settings.backend,
                                                                    threads=settings.model_threads, device=device),
                     on_load_error=stop)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info",
                                           access_log=settings.access_log, timeout_graceful_shutdown=5))
    url_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    logger.info("Serving the %s of %s on %s (%d model thread(s), %d worker(s)) at http://%s:%d (page at /, API docs "
                "at /docs); loading the model...", settings.model, run_dir.name, settings.backend, settings.model_threads,
                settings.workers, url_host, settings.port)
    server.run()
    if app.state.service["error"]:
        raise ModelError(f"The {settings.model} of {run_dir.name} could not be loaded on {settings.backend}: "
                         f"{app.state.service['error']}")
    return 0
