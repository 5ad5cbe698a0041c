"""`prompts list|show|add|activate|preview`: versioned prompt profiles."""

from __future__ import annotations

import json

from chat.config import Config, positive_int


def register(sub) -> None:
    p = sub.add_parser("prompts", help="versioned system prompts and few-shot examples")
    psub = p.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")
    a = psub.add_parser("list", help="all versions with their status")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_list)
    a = psub.add_parser("show", help="one version in full")
    a.add_argument("version", type=int)
    a.set_defaults(func=cmd_show)
    a = psub.add_parser("add", help="add a new version from a JSON file (not activated)")
    a.add_argument("file")
    a.add_argument("--user", default="cli")
    a.set_defaults(func=cmd_add)
    a = psub.add_parser("activate", help="make a version the active one (no restart needed)")
    a.add_argument("version", type=int)
    a.set_defaults(func=cmd_activate)
    a = psub.add_parser("preview", help="answers of the active and a candidate version")
    a.add_argument("version", type=int)
    a.add_argument("--n", type=positive_int, default=3, help="how many held-out questions")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_preview)


def _profiles(cfg: Config):
    from chat.profiles import ProfileStore
    from feedback.store import Store

    return ProfileStore(Store(cfg.db_path), cfg.system_prompt)


def cmd_list(cfg: Config, args) -> int:
    rows = _profiles(cfg).list()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    for r in rows:
        shots = len(json.loads(r["few_shot_json"])) // 2
        print(f"v{r['version']:<4} {r['status']:<8} {r['created_at'][:19]}  few-shot={shots}  "
              f"{(r['note'] or '')[:40]}  {r['system_prompt'][:60]!r}")
    return 0


def cmd_show(cfg: Config, args) -> int:
    from chat.profiles import profile_as_json

    print(json.dumps(profile_as_json(_profiles(cfg).get(args.version)), indent=2,
                     ensure_ascii=False))
    return 0


def cmd_add(cfg: Config, args) -> int:
    from chat.profiles import load_profile_file

    profile, note = load_profile_file(args.file)
    version = _profiles(cfg).add(profile, args.user, note)
    print(f"added prompt profile v{version} (activate with: launch.py prompts activate {version})")
    return 0


def cmd_activate(cfg: Config, args) -> int:
    _profiles(cfg).activate(args.version)
    print(f"prompt profile v{args.version} is active")
    return 0


def cmd_preview(cfg: Config, args) -> int:
    from chat.profiles import preview, preview_questions
    from chat.runtime import build_runtime

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
