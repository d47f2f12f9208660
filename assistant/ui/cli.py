"""The ``egaki`` command: ``egaki run`` serves the chat; ``egaki settings`` shows config;
``egaki ledger …`` searches and exports the image ledger (see :mod:`assistant.ui.ledger_cli`).

``run`` wraps ``chainlit run`` with private defaults: bind to 127.0.0.1, headless,
telemetry-free, and Chainlit's working files kept in the project folder.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

from assistant.ui.ledger_cli import add_ledger_parser, run_ledger
from tools.core.errors import ConfigError
from tools.core.settings import Settings

APP_ROOT = Path(__file__).resolve().parents[2]
UI_MODULE = Path(__file__).resolve().parent / "chainlit_app.py"

# Set before chainlit is imported: these are read at import time.
APP_FILES = (".chainlit", "public", "chainlit.md", "chainlit_ja.md", "chainlit_ja-JP.md")
PRIVATE_ENV = {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "ANONYMIZED_TELEMETRY": "False",  # chromadb
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_TRACING": "false",
    "TRACELOOP_TELEMETRY": "false",
}


def check_serving(settings: Settings) -> None:
    """Refuse to expose the chat on a network without a password."""
    if not settings.is_loopback and not settings.auth_password:
        raise ConfigError.of("serving_exposed", host=settings.host)


def apply_private_env(settings: Settings) -> None:
    for key, value in PRIVATE_ENV.items():
        os.environ.setdefault(key, value)
    if settings.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"


def ensure_auth_secret(settings: Settings) -> None:
    """Chainlit signs login tokens with CHAINLIT_AUTH_SECRET; keep one per data dir.

    Needed even without a password: chat history uses a local header login."""
    if os.environ.get("CHAINLIT_AUTH_SECRET"):
        return
    path = settings.data_dir / ".auth_secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    os.environ["CHAINLIT_AUTH_SECRET"] = path.read_text().strip()


def prepare_app_root(settings: Settings) -> Path:
    """Chainlit's working folder, inside the data dir.

    Chainlit keeps session uploads in ``<app root>/.files`` and deletes that folder on
    shutdown; under the data dir it is private to this instance (never the source tree,
    never shared by two instances). Config, translations, readmes and custom elements are
    copied in fresh on each start.
    """
    root = settings.data_dir / "app"
    root.mkdir(parents=True, exist_ok=True)
    for name in APP_FILES:
        src = APP_ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, root / name)
    return root


def run(settings: Settings, host: str | None, port: int | None, watch: bool) -> int:
    if host or port:
        settings = settings.model_copy(
            update={k: v for k, v in {"host": host, "port": port}.items() if v}
        )
    check_serving(settings)
    settings.ensure_dirs()
    apply_private_env(settings)
    os.environ["CHAINLIT_APP_ROOT"] = str(prepare_app_root(settings))
    ensure_auth_secret(settings)
    os.environ["EGAKI_HOST"] = settings.host
    os.environ["EGAKI_PORT"] = str(settings.port)
    from chainlit.cli import cli  # imported late: it reads the env set above

    args = ["run", str(UI_MODULE), "--headless", "--host", settings.host,
            "--port", str(settings.port)]
    if watch:
        args.append("--watch")
    print(f"Egaki is starting on http://{settings.host}:{settings.port}", flush=True)
    cli.main(args=args, prog_name="egaki", standalone_mode=True)
    return 0


def compare_models(settings: Settings, models: list[str], json_path: Path | None,
                   n_requests: int) -> int:
    """``egaki compare-models``: print the table (and write the JSON)."""
    import asyncio

    from assistant.prompting.compare import REQUESTS, as_json, compare, table
    from tools.llm.backend import make_chat_model

    def make(model: str) -> Any:
        return make_chat_model(settings, model, temperature=0, seed=42)

    rows = asyncio.run(compare(models, make, REQUESTS[: max(1, min(n_requests, 4))],
                               on_progress=lambda line: print(line, file=sys.stderr),
                               limit={"num_predict" if settings.llm_api == "ollama"
                                      else "max_tokens": 128}))
    print(table(rows))
    if json_path is not None:
        json_path.write_text(as_json(rows), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="egaki", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="serve the chat in your browser")
    p_run.add_argument("--host", help="bind address (default 127.0.0.1)")
    p_run.add_argument("--port", type=int, help="port (default 8000)")
    p_run.add_argument("--watch", action="store_true", help="reload on code changes")
    sub.add_parser("settings", help="print the effective settings")
    p_cmp = sub.add_parser("compare-models", help="run Egaki's tasks on chat models, side by side")
    p_cmp.add_argument("models", nargs="+", help="model names on the configured server")
    p_cmp.add_argument("--json", type=Path, help="also write every number to this file")
    p_cmp.add_argument("--requests", type=int, default=4, help="sample requests per model (1-4)")
    add_ledger_parser(sub)
    args = parser.parse_args(argv)

    try:
        settings = Settings()
        if args.command == "settings":
            print(settings.model_dump_json(indent=2, exclude={"auth_password", "openai_api_key"}))
            return 0
        if args.command == "ledger":
            return run_ledger(args, settings)
        if args.command == "compare-models":
            return compare_models(settings, args.models, args.json, args.requests)
        return run(settings, args.host, args.port, args.watch)
    except ConfigError as err:
        print(f"egaki: {err.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
