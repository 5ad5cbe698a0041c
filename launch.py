"""The one entry point: parses arguments and calls the packages."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sqlite3
import sys

from chat.config import load_config
from chat.errors import ChatError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# Each module has register(subparsers): subcommands live with the package they belong to.
COMMAND_MODULES = ["chat.cli", "chat.users_cli", "feedback.cli", "retrieval.cli", "training.cli",
                   "chat.bench.cli"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launch.py", description="A chat assistant that learns from its users.")
    parser.add_argument("--data-dir", default=None, help="data folder (env CHAT_DATA_DIR)")
    parser.add_argument("--base-model", default=None, help="HF id or path (env CHAT_BASE_MODEL)")
    parser.add_argument("--embedder", default=None, help="HF id or path (env CHAT_EMBEDDER)")
    parser.add_argument("--device", default=None, help="auto|cpu|cuda (env CHAT_DEVICE)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    try:
        cfg = load_config(data_dir=args.data_dir, base_model=args.base_model,
                          embedder=args.embedder, device=args.device)
        return args.func(cfg, args) or 0
    except (ChatError, ValueError, OSError, OverflowError) as exc:
        # OSError: a path that is a folder, unwritable...; OverflowError: an id past SQLite's
        # 64-bit integers. One line, not a traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:  # not a database, locked past the busy timeout, disk full
        print(f"error: the database {cfg.db_path}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
