"""`feedback import | export | stats` subcommands."""

from __future__ import annotations

import json
import sys

from chat.config import Config
from chat.profiles import active_profile
from feedback.export import export_rows, write_jsonl
from feedback.importer import import_file
from feedback.stats import feedback_stats, format_stats
from feedback.store import Store


def register(sub) -> None:
    p = sub.add_parser("feedback", help="import, export or count feedback")
    fsub = p.add_subparsers(dest="feedback_command", required=True, metavar="ACTION")

    q = fsub.add_parser("import", help="import a JSONL file (all lines or none)")
    q.add_argument("file", help="JSONL: preference | rating | correction lines")
    q.set_defaults(func=cmd_import)

    q = fsub.add_parser("export", help="export feedback as JSONL in TRL's formats")
    q.add_argument("--format", choices=["dpo", "kto", "raw"], default="dpo")
    q.add_argument("--out", default=None, help="output file (default: stdout)")
    q.set_defaults(func=cmd_export)

    q = fsub.add_parser("stats", help="counts by kind, reason and adapter version")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=cmd_stats)


def _store(cfg: Config):
    return Store(cfg.db_path)


def cmd_import(cfg: Config, args) -> int:
    counts = import_file(_store(cfg), args.file)
    detail = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
    print(f"imported {sum(counts.values())} lines: {detail}")
    return 0


def cmd_export(cfg: Config, args) -> int:
    store = _store(cfg)
    # framed as training frames them (bare imported questions get the active system prompt)
    rows = export_rows(store, args.format, active_profile(store, cfg))
    write_jsonl(rows, args.out)
    print(f"exported {len(rows)} {args.format} rows" + (f" to {args.out}" if args.out else ""),
          file=sys.stderr)
    return 0


def cmd_stats(cfg: Config, args) -> int:
    stats = feedback_stats(_store(cfg))
    print(json.dumps(stats, ensure_ascii=False) if args.json else format_stats(stats))
    return 0
