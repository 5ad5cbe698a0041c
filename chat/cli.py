"""The chat package's subcommands: provision, serve, ask; prompts (versioned prompt profiles).
Accounts: chat/users_cli.py."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from chat.config import Config, positive_int, replace
from chat.engine.loading import load_embedder, resolve_base_model
from chat.errors import BadInput
from chat.profiles import (
    ProfileStore,
    load_profile_file,
    preview,
    preview_questions,
    profile_as_json,
)
from chat.runtime import build_runtime
from chat.server import serve
from feedback.store import Store


def register(sub) -> None:
    _register_chat(sub)
    _register_prompts(sub)


# ---------------------------------------------------------------------------- chat


def _register_chat(sub) -> None:
    p = sub.add_parser("provision", help="convert/cache the default models (run by make)")
    p.set_defaults(func=cmd_provision)

    p = sub.add_parser("serve", help="start the web app")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("ask", help="ask a question (or a file of them) and print the answers")
    p.add_argument("question", nargs="?", default=None)
    p.add_argument("--questions", default=None, metavar="FILE",
                   help="a text file of questions, one a line, each asked on its own")
    p.add_argument("--json", action="store_true", help="print one JSON object an answer")
    p.add_argument("--adapter", default=None, help="pin an adapter version (or 'base')")
    p.add_argument("--user", default="cli", help="identity recorded with the message")
    p.add_argument("--max-new-tokens", type=positive_int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.set_defaults(func=cmd_ask)


def cmd_provision(cfg: Config, args) -> int:
    print(f"base model: {resolve_base_model(cfg)}")
    load_embedder(cfg)
    print("embedder: ok")
    return 0


def cmd_serve(cfg: Config, args) -> int:
    cfg = replace(cfg, host=args.host or cfg.host, port=cfg.port if args.port is None
                  else args.port)  # checked here, before the model loads
    serve(cfg, host=cfg.host, port=cfg.port)
    return 0


def cmd_ask(cfg: Config, args) -> int:
    questions = _questions(args)  # bad input fails before the model loads
    rt = build_runtime(cfg)
    defaults = rt.service.default_params()
    params = dataclasses.replace(
        defaults, temperature=defaults.temperature if args.temperature is None
        else args.temperature, max_new_tokens=defaults.max_new_tokens
        if args.max_new_tokens is None else args.max_new_tokens)
    for question in questions:
        if args.json:
            answer = rt.service.ask(question, args.user, adapter=args.adapter, params=params)
            usage, truncated = rt.service.usage(answer)
            out = {**answer.as_json(), "usage": usage,
                   "finish_reason": "length" if truncated else "stop"}
            print(json.dumps(out, ensure_ascii=False), flush=True)
            continue
        for answer in rt.service.stream(question, args.user, adapter=args.adapter,
                                        params=params):
            pass_text = answer.text
        print(pass_text)
        for i, s in enumerate(answer.sources, 1):
            print(f"  [{i}] {s.document} (score {s.score:.2f})", file=sys.stderr)
    return 0


def _questions(args) -> list[str]:
    if (args.question is None) == (args.questions is None):
        raise BadInput("give one question, or --questions FILE (not both)")
    if args.question is not None:
        return [args.question]
    try:
        lines = Path(args.questions).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {args.questions}: {exc}") from None
    questions = [line.strip() for line in lines if line.strip()]
    if not questions:
        raise BadInput(f"{args.questions} holds no questions")
    return questions


# ---------------------------------------------------------------------------- prompts


def _register_prompts(sub) -> None:
    p = sub.add_parser("prompts", help="versioned system prompts and few-shot examples")
    psub = p.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")
    a = psub.add_parser("list", help="all versions with their status")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=prompts_list)
    a = psub.add_parser("show", help="one version in full")
    a.add_argument("version", type=int)
    a.set_defaults(func=prompts_show)
    a = psub.add_parser("add", help="add a new version from a JSON file (not activated)")
    a.add_argument("file")
    a.add_argument("--user", default="cli")
    a.set_defaults(func=prompts_add)
    a = psub.add_parser("activate", help="make a version the active one (no restart needed)")
    a.add_argument("version", type=int)
    a.set_defaults(func=prompts_activate)
    a = psub.add_parser("preview", help="answers of the active and a candidate version")
    a.add_argument("version", type=int)
    a.add_argument("--n", type=positive_int, default=3, help="how many held-out questions")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=prompts_preview)


def _profiles(cfg: Config):
    return ProfileStore(Store(cfg.db_path), cfg.system_prompt)


def prompts_list(cfg: Config, args) -> int:
    rows = _profiles(cfg).list()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    for r in rows:
        shots = len(json.loads(r["few_shot_json"])) // 2
        print(f"v{r['version']:<4} {r['status']:<8} {r['created_at'][:19]}  few-shot={shots}  "
              f"{(r['note'] or '')[:40]}  {r['system_prompt'][:60]!r}")
    return 0


def prompts_show(cfg: Config, args) -> int:
    print(json.dumps(profile_as_json(_profiles(cfg).get(args.version)), indent=2,
                     ensure_ascii=False))
    return 0


def prompts_add(cfg: Config, args) -> int:
    profile, note = load_profile_file(args.file)
    version = _profiles(cfg).add(profile, args.user, note)
    print(f"added prompt profile v{version} (activate with: launch.py prompts activate {version})")
    return 0


def prompts_activate(cfg: Config, args) -> int:
    _profiles(cfg).activate(args.version)
    print(f"prompt profile v{args.version} is active")
    return 0


def prompts_preview(cfg: Config, args) -> int:
    rt = build_runtime(cfg)
    candidate = _profiles(cfg).get(args.version)
    rows = preview(rt.service, candidate, preview_questions(rt.store, args.n))
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    for row in rows:
        print(f"Q: {row['question']}\n  active:    {row['active']!r}\n"
              f"  candidate: {row['candidate']!r}\n")
    return 0
