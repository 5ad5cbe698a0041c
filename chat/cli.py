"""Core subcommands: provision, serve, ask."""

from __future__ import annotations

import json
import sys

from chat.config import Config, positive_int, replace


def register(sub) -> None:
    p = sub.add_parser("provision", help="convert/cache the default models (run by make)")
    p.set_defaults(func=cmd_provision)

    p = sub.add_parser("serve", help="start the web app")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("ask", help="ask one question and print the answer")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--adapter", default=None, help="pin an adapter version (or 'base')")
    p.add_argument("--user", default="cli", help="identity recorded with the message")
    p.add_argument("--max-new-tokens", type=positive_int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.set_defaults(func=cmd_ask)


def cmd_provision(cfg: Config, args) -> int:
    from chat.engine.loading import load_embedder, resolve_base_model

    print(f"base model: {resolve_base_model(cfg)}")
    load_embedder(cfg)
    print("embedder: ok")
    return 0


def cmd_serve(cfg: Config, args) -> int:
    from chat.server import serve

    cfg = replace(cfg, host=args.host or cfg.host, port=cfg.port if args.port is None
                  else args.port)  # checked here, before the model loads
    serve(cfg, host=cfg.host, port=cfg.port)
    return 0


def cmd_ask(cfg: Config, args) -> int:
    from chat.engine.engine import GenParams
    from chat.runtime import build_runtime

    rt = build_runtime(cfg)
    params = GenParams(
        args.temperature if args.temperature is not None else cfg.temperature, cfg.top_p,
        cfg.max_new_tokens if args.max_new_tokens is None else args.max_new_tokens)
    if args.json:
        answer = rt.service.ask(args.question, args.user, adapter=args.adapter, params=params)
        print(json.dumps(answer.as_json(), ensure_ascii=False))
        return 0
    for answer in rt.service.stream(args.question, args.user, adapter=args.adapter,
                                    params=params):
        pass_text = answer.text
    print(pass_text)
    for i, s in enumerate(answer.sources, 1):
        print(f"  [{i}] {s.document} (score {s.score:.2f})", file=sys.stderr)
    return 0
