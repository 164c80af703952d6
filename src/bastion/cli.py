"""The bastion command: run the stack or one part of it, and manage agent keys."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from bastion import audit_cli, budgets_cli, listen, lists_cli, logs
from bastion import settings as s


def _require_policies(directory: Path) -> None:
    """Fail closed, saying how to start, when the policies folder does not exist."""
    if not directory.is_dir():
        raise SystemExit(
            f"bastion: no policies folder at {directory}: create it from the bundled policies with\n"
            f"  bastion init --policies {directory}\n(or point --policies / BASTION_POLICIES at yours)"
        )


def _init(args: argparse.Namespace) -> int:
    from bastion.bundled import init_policies

    if not init_policies(args.policies):
        print(f"{args.policies} exists already; nothing was changed (bastion init only creates it).")
        return 1
    print(f"Created {args.policies} from the bundled policies: edit them there (README, 'Editing policies').")
    return 0


def _collector(args: argparse.Namespace) -> int:
    settings = s.collector_settings(args)
    _require_policies(settings.policies_dir)
    sock = listen.bind("collector", settings.host, settings.port)  # before the slow imports: fail fast
    from bastion.collector.app import serve

    serve(settings, sock, args.log_level)
    return 0


def _proxy(args: argparse.Namespace) -> int:
    settings = s.proxy_settings(args)
    _require_policies(settings.policies_dir)
    if settings.worker:  # one of a supervisor's workers: the ports are already shared with its siblings
        from bastion.proxy.server import run

        asyncio.run(run(settings))
        return 0
    listen.check_free("proxy (reverse, --proxy-port)", settings.host, settings.reverse_port)
    listen.check_free("proxy (explicit, --explicit-port)", settings.host, settings.explicit_port)
    if settings.metrics_port is not None:
        for worker in range(settings.workers):
            port = settings.metrics_port + worker
            listen.check_free("proxy (metrics, --metrics-port)", settings.host, port)
    if settings.workers > 1:
        from bastion.proxy.workers import Supervisor

        return Supervisor(settings, sys.argv[1:]).run()
    from bastion.proxy.server import run

    asyncio.run(run(settings))
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    app = Path(__file__).parent / "dashboard" / "app.py"
    settings = s.dashboard_settings(args)
    listen.check_free("dashboard", settings.host, settings.port)  # Streamlit would try the next port
    os.environ["BASTION_COLLECTOR_URL"] = settings.collector_url
    argv = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true"]
    argv += ["--server.address", settings.host, "--server.port", str(settings.port)]
    argv += ["--browser.gatherUsageStats", "false", "--logger.level", args.log_level]
    os.execv(sys.executable, argv)


def _scripted_model(args: argparse.Namespace) -> int:
    sock = listen.bind("scripted-model", args.host, args.port)
    from bastion.agents.model_server import serve

    serve(sock, args.log_level)
    return 0


def _tool_server(args: argparse.Namespace) -> int:
    sock = listen.bind("tool-server", args.host, args.port)
    from bastion.agents.tool_server import serve

    serve(sock, args.host, args.log_level, args.suite)
    return 0


def _up(args: argparse.Namespace) -> int:
    from bastion.bundled import init_policies

    if init_policies(args.policies):  # a first run: the folder operators edit starts as the bundled one
        print(f"Created {args.policies} from the bundled policies: edit them there (README, 'Editing policies').")
    from bastion.stack import up

    return up(args)


def _keys_file(args: argparse.Namespace) -> Path:
    from bastion.proxy.config import load

    return args.keys_file or load(args.policies).keys_file


def _keys_create(args: argparse.Namespace) -> int:
    from bastion.proxy.keys import create_key

    key, key_id = create_key(_keys_file(args), args.agent, args.role)
    print(f"Created key {key_id} for agent {args.agent!r} (role {args.role!r}). It is shown only once:")
    print(key)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from bastion.proxy.keys import list_keys

    for entry in list_keys(_keys_file(args)):
        status = "revoked" if entry.get("revoked") else "active"
        print(f"{entry.get('id')}  {entry.get('agent')}  role={entry.get('role')}  {status}  {entry.get('created')}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from bastion.proxy.keys import revoke

    if not (args.id or args.agent):
        print("bastion keys revoke: give --id or --agent", file=sys.stderr)
        return 2
    revoked = revoke(_keys_file(args), key_id_=args.id, agent_id=args.agent)
    if not revoked:
        print("No active key matched.", file=sys.stderr)
        return 1
    print(f"Revoked {', '.join(revoked)}. Running proxies stop accepting it within a second or two.")
    return 0


def _policy_check(args: argparse.Namespace) -> int:
    from bastion import budgets
    from bastion.proxy import cost
    from bastion.proxy.config import ConfigError, load
    from bastion.proxy.keys import list_keys
    from bastion.proxy.policy import CompiledPolicy, PolicyError

    try:
        config = load(args.policies)
        policy = CompiledPolicy(args.policies)
        keys = list_keys(config.keys_file)
        prices, budget_list = cost.load(args.policies), budgets.load(args.policies)
    except (ConfigError, PolicyError, ValueError, OSError) as e:
        print(f"bastion policy check: {e}", file=sys.stderr)
        return 1
    shadow = f"; shadow rules: {', '.join(sorted(policy.shadow))}" if policy.shadow else ""
    print(
        f"OK: policy version {policy.version}, {len(policy.rules)} rules, "
        f"{len(policy.conditions.lists)} lists, {len(config.routes)} routes, "
        f"{sum(not k.get('revoked') for k in keys)} active keys, {len(prices.models)} prices "
        f"(built-in as of {prices.as_of}), {len(budget_list)} budgets{shadow}"
    )
    return 0


def _policy_test(args: argparse.Namespace) -> int:
    from bastion.files import ConfigError
    from bastion.proxy import limits
    from bastion.proxy.policy import PolicyEngine, PolicyError
    from bastion.proxy.policy_tests import CaseError, run

    try:
        failures = run(PolicyEngine(args.policies), args.files, sys.stdout, limits.load(args.policies))
    except (PolicyError, CaseError, ConfigError) as e:
        print(f"bastion policy test: {e}", file=sys.stderr)
        return 2
    return 1 if failures else 0


def _policy_replay(args: argparse.Namespace) -> int:
    import httpx

    from bastion import audit_cli, policy_replay
    from bastion.proxy.policy import PolicyError

    window = {k: v for k, v in (("since", args.since), ("until", args.until)) if v}
    try:
        with audit_cli.client(args.collector_url, s.collector_headers(s.operator_token(args))) as api:
            items = list(audit_cli.pages(api, "/api/audit/spans", window))
        changes = policy_replay.run(args.policies, items, sys.stdout, agent=args.agent)
    except (PolicyError, httpx.HTTPError) as e:
        print(f"bastion policy replay: {e}", file=sys.stderr)
        return 2
    return 1 if changes and args.fail_on_change else 0


def _add_policy_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = commands.add_parser("policy", help="validate and test the policy files")
    actions = policy.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate the files in the policies directory")
    check.set_defaults(run=_policy_check)
    test = actions.add_parser("test", help="run YAML tables of calls against their expected decisions")
    test.add_argument("files", nargs="+", type=Path, help="YAML test files")
    test.set_defaults(run=_policy_test)
    replay = actions.add_parser(
        "replay", help="decide stored tool calls again with a candidate policy and print what would change"
    )
    replay.add_argument("--since", help="first decision time (ISO-8601)")
    replay.add_argument("--until", help="last decision time (ISO-8601)")
    replay.add_argument("--agent", help="only this agent's calls")
    replay.add_argument("--fail-on-change", action="store_true", help="exit 1 when any decision would change")
    s.add_part(replay, s.CLIENT)
    replay.set_defaults(run=_policy_replay)
    for p in (check, test, replay):
        s.add_setting(p, s.POLICIES)


def _add_keys_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="issue, list and revoke agent keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="issue a key; it is printed once and stored as a hash")
    create.add_argument("--agent", required=True, help="agent id")
    create.add_argument("--role", required=True, help="role name (policy subject role:<name>)")
    create.set_defaults(run=_keys_create)
    listing = actions.add_parser("list", help="list keys (ids, agents, roles; never the keys)")
    listing.set_defaults(run=_keys_list)
    rev = actions.add_parser("revoke", help="revoke a key by id, or every key of an agent")
    rev.add_argument("--id", help="key id, as shown by create and list")
    rev.add_argument("--agent", help="revoke every key of this agent")
    rev.set_defaults(run=_keys_revoke)
    for p in (create, listing, rev):
        s.add_settings(p, s.POLICIES, s.KEYS_FILE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bastion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create the policies folder from the bundled policies")
    s.add_setting(init, s.POLICIES)
    init.set_defaults(run=_init)

    up = commands.add_parser("up", help="start collector, proxy and dashboard together")
    s.add_settings(up, *s.up_settings())
    up.add_argument(
        "--demo", action="store_true", help="also start the scripted model and tool server, and run the reference agent"
    )
    up.set_defaults(run=_up)

    collector = commands.add_parser("collector", help="run the collector: OTLP intake, store and API")
    s.add_part(collector, s.COLLECTOR)
    collector.set_defaults(run=_collector)

    proxy = commands.add_parser("proxy", help="run the governance proxy")
    s.add_part(proxy, s.PROXY)
    proxy.set_defaults(run=_proxy)

    dashboard = commands.add_parser("dashboard", help="run the Streamlit dashboard")
    s.add_part(dashboard, s.DASHBOARD)
    dashboard.set_defaults(run=_dashboard)

    scripted = commands.add_parser("scripted-model", help="run the offline OpenAI/Anthropic/Gemini-compatible model")
    s.add_option(scripted, "--host", env="BASTION_SCRIPTED_MODEL_HOST", default="127.0.0.1", help="listen address")
    model_port = s.SCRIPTED_MODEL_PORT  # the same setting as up's --scripted-model-port
    s.add_option(scripted, "--port", env=model_port.env, default=model_port.default, cast=int, help="port")
    scripted.set_defaults(run=_scripted_model)

    tools = commands.add_parser("tool-server", help="run the offline demo MCP tool server")
    s.add_option(tools, "--host", env="BASTION_TOOL_SERVER_HOST", default="127.0.0.1", help="listen address")
    tools_port = s.TOOL_SERVER_PORT  # the same setting as up's --tool-server-port
    s.add_option(tools, "--port", env=tools_port.env, default=tools_port.default, cast=int, help="port")
    tools.add_argument(
        "--suite", choices=("demo", "assistant"), default="demo", help="which tools: the demo's or the assistant's"
    )
    tools.set_defaults(run=_tool_server)

    _add_keys_commands(commands)
    _add_policy_commands(commands)
    audit_cli.add_commands(commands)
    lists_cli.add_commands(commands)
    budgets_cli.add_commands(commands)
    from bastion.control_cli import add_commands

    add_commands(commands)
    for command in _commands(parser):
        logs.add_options(command)
    return parser


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every command that runs something (``bastion keys create``, ``bastion up``, ...)."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield parser
    for group in groups:
        for sub in dict.fromkeys(group.choices.values()):
            yield from _commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
