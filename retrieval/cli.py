"""Retrieval subcommands: ingest, documents list|delete, retrievers list|show|activate|rollback."""

from __future__ import annotations

import json

from chat.config import Config
from feedback.store import Store
from retrieval import versions
from retrieval.ingest import list_documents
from retrieval.retriever import Retriever


def register(sub) -> None:
    p = sub.add_parser("ingest", help="add files or folders (txt, md, html, pdf) to the "
                                      "knowledge base")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("documents", help="list or delete knowledge-base documents")
    dsub = p.add_subparsers(dest="documents_command", required=True, metavar="ACTION")
    q = dsub.add_parser("list", help="list documents and their chunk counts")
    q.add_argument("--json", action="store_true", help="print a JSON list")
    q.set_defaults(func=cmd_documents_list)
    q = dsub.add_parser("delete", help="delete a document, its chunks and their vectors")
    q.add_argument("id", type=int)
    q.set_defaults(func=cmd_documents_delete)

    p = sub.add_parser("retrievers", help="list, show, activate or roll back retriever versions "
                                          "(trained with `train --method retrieval`)")
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = rsub.add_parser("list", help="all versions with status and gate figures")
    q.add_argument("--json", action="store_true")
    q = rsub.add_parser("show", help="one version: metrics and meta")
    q.add_argument("version")
    q.add_argument("--json", action="store_true")
    q = rsub.add_parser("activate", help="serve this version (running servers follow)")
    q.add_argument("version")
    rsub.add_parser("rollback", help="serve again what was served before (a version or the "
                                     "plain embedder)")
    p.set_defaults(func=cmd_retrievers)


def _retriever(cfg: Config):
    return Retriever(cfg, Store(cfg.db_path))


def cmd_ingest(cfg: Config, args) -> int:
    """Exit 0 when every file was ingested or skipped, 1 when some were reported in errors."""
    report = _retriever(cfg).ingest(args.paths)
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False))
    else:
        print(f"{report.documents_added} documents added ({report.chunks_added} chunks), "
              f"{report.skipped} unchanged, {len(report.errors)} errors")
        for error in report.errors:
            print(f"  {error['path']}: {error['error']}")
    return 1 if report.errors else 0


def cmd_documents_list(cfg: Config, args) -> int:
    docs = list_documents(Store(cfg.db_path))  # no embedder needed just to list
    if args.json:
        print(json.dumps(docs, ensure_ascii=False))
        return 0
    for d in docs:
        print(f"{d['id']:>5}  {d['chunks']:>4} chunks  {d['title']}  ({d['path']})")
    if not docs:
        print("no documents; add some with `launch.py ingest PATH`")
    return 0


def cmd_documents_delete(cfg: Config, args) -> int:
    n = _retriever(cfg).delete(args.id)
    print(f"deleted document {args.id} ({n} chunks)")
    return 0


def cmd_retrievers(cfg: Config, args) -> int:
    store = Store(cfg.db_path)
    if args.action == "list":
        rows = versions.list_versions(store)
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
        for r in [] if args.json else rows:
            gate = (r["metrics"] or {}).get("gate") or {}
            after = gate.get("heldout_after") or {}
            erased = "  contains erased data" if r["erased_data"] else ""
            print(f"{r['version']}  {r['status']:<9} {gate.get('verdict')}  held-out mrr "
                  f"{(gate.get('heldout_before') or {}).get('mrr')} -> {after.get('mrr')}  "
                  f"{r['created_at']}{erased}")
        if not rows and not args.json:
            print("no retriever versions yet; the plain embedder is served")
    elif args.action == "show":
        print(json.dumps(versions.get(store, args.version), ensure_ascii=False,
                         indent=None if args.json else 2))
    elif args.action == "activate":
        print(f"{versions.activate(store, args.version)['version']} is active")
    else:
        print(f"{versions.rollback(store) or 'the plain embedder'} is active")
    return 0
