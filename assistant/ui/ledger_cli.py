"""``egaki ledger …``: search, show, export and reconcile the image ledger from a terminal.

    egaki ledger search "a fox in snow" -k 5
    egaki ledger show '#a1b2c3d4'
    egaki ledger export a1b2c3d4 b2c3d4e5 --format json --out picks.json
    egaki ledger export                      # every record, A1111 infotext
    egaki ledger recent -n 10
    egaki ledger reconcile                   # after a crash or copying PNGs in

Ids may be written with or without the ``#`` (quote it: shells treat ``#`` as a comment).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tools.core.errors import ConfigError, EgakiError
from tools.core.settings import Settings
from tools.ledger.types import LedgerRecord


def add_ledger_parser(sub: Any) -> None:
    """Register ``ledger`` and its subcommands on the main parser's subparsers."""
    p = sub.add_parser("ledger", help="search, show, export and repair the image ledger")
    cmds = p.add_subparsers(dest="ledger_command", required=True)
    s = cmds.add_parser("search", help="find images by meaning (or words when offline)")
    s.add_argument("text", nargs="+", help="what to look for")
    s.add_argument("-k", type=int, default=10, help="how many results (default 10)")
    s.add_argument("--all", action="store_true", help="include rejected candidates")
    r = cmds.add_parser("recent", help="the newest records")
    r.add_argument("-n", type=int, default=20, help="how many (default 20)")
    sh = cmds.add_parser("show", help="everything recorded about one image")
    sh.add_argument("id", help="record id, e.g. a1b2c3d4 or '#a1b2c3d4'")
    e = cmds.add_parser(
        "export", help="A1111 infotext or JSON of records (all by default; one id gives "
        "exactly its text / JSON object, several a list)")
    e.add_argument("ids", nargs="*", metavar="ID", help="record ids; none = every record")
    e.add_argument("--format", choices=("a1111", "json"), default="a1111")
    e.add_argument("--out", type=Path, help="write to this file instead of stdout")
    cmds.add_parser("reconcile", help="record unrecorded PNGs, flag missing files, fix index")


def _stars(record: LedgerRecord) -> str:
    return "★" * (record.rating or 0) + "☆" * (5 - (record.rating or 0)) if record.rating else ""


def _line(record: LedgerRecord, score: float | None = None) -> str:
    flags = " ".join(f for f in (
        _stars(record), "♥" if record.favourite else "",
        "rejected" if record.status == "rejected" else "",
        "MISSING FILE" if record.missing else "",
    ) if f)
    prompt = record.request.prompt.replace("\n", " ")
    prompt = prompt if len(prompt) <= 80 else prompt[:79] + "…"
    head = f"{record.tag}  " + (f"{score:5.3f}  " if score is not None else "")
    when = record.created_at[:16].replace("T", " ")
    return (f"{head}{when}  {record.width}x{record.height} seed {record.seed}"
            f"{'  ' + flags if flags else ''}\n    {prompt}\n    {record.path}")


def _show(record: LedgerRecord) -> str:
    req = record.request
    rows: list[tuple[str, object]] = [
        ("id", record.tag), ("file", f"{record.path}{' (missing)' if record.missing else ''}"),
        ("created", record.created_at), ("status", record.status),
        ("rating", _stars(record) or "-"), ("favourite", "yes" if record.favourite else "no"),
        ("thread", record.thread_id or "-"),
        ("parent", f"#{record.parent_id}" if record.parent_id else "-"),
        ("user words", record.user_words or "-"), ("prompt", req.prompt),
        ("negative", req.negative_prompt or "-"),
        ("settings", f"{record.width}x{record.height}, {req.steps} steps, {req.sampler}, "
                     f"CFG {req.cfg_scale:g}, seed {record.seed}"),
        ("model", f"{record.model_name or req.model or '-'} [{record.model_hash or '?'}]"),
        ("loras", ", ".join(f"{lo.name}:{lo.weight:g}" for lo in req.loras) or "-"),
        ("duration", f"{record.duration_s:.1f} s"), ("origin", record.origin),
    ]
    if record.quality is not None:
        rows.append(("quality", record.quality))
    width = max(len(k) for k, _ in rows)
    body = "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
    return f"{body}\n\nA1111 parameters:\n{record.infotext}"


def run_ledger(args: argparse.Namespace, settings: Settings) -> int:
    """Run one ``egaki ledger`` subcommand; EgakiErrors become a message and exit code 1."""
    from tools.ledger.service import Ledger  # imported late: `egaki run` shouldn't pay for it

    out, err = sys.stdout, sys.stderr
    try:
        with Ledger.from_settings(settings, background_index=False) as ledger:
            cmd = args.ledger_command
            if cmd == "search":
                result = ledger.search(" ".join(args.text), args.k, include_rejected=args.all)
                if result.note is not None:
                    print(f"note: {result.note.localized('en')}", file=err)
                if not result.hits:
                    print("No matching images.", file=out)
                for hit in result.hits:
                    print(_line(hit.record, hit.score), file=out)
            elif cmd == "recent":
                records = ledger.recent(args.n, include_rejected=True)
                if not records:
                    print("The ledger is empty.", file=out)
                for record in records:
                    print(_line(record), file=out)
            elif cmd == "show":
                print(_show(ledger.get(args.id)), file=out)
            elif cmd == "export":
                # One id: exactly what A1111 pastes (or one JSON object); else all of them.
                text = (ledger.export(args.ids[0], args.format) if len(args.ids) == 1
                        else ledger.export_many(args.ids or None, args.format))
                if args.out is not None:
                    args.out.write_text(text + "\n", encoding="utf-8")
                    n = len(args.ids) if args.ids else ledger.count()
                    print(f"Wrote {n} record(s) to {args.out}", file=err)
                else:
                    print(text, file=out)
            elif cmd == "reconcile":
                print(ledger.reconcile().summary(), file=out)
    except ConfigError:
        raise  # the main command reports it (exit code 2)
    except EgakiError as e:
        print(f"egaki: {e.message}", file=err)
        return 1
    return 0
