"""The ``bastion`` command: run the stack or one part of it, and manage keys."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bastion import settings as s


def _collector(args: argparse.Namespace) -> int:
    from bastion.collector.app import serve

    serve(s.collector_settings(args))
    return 0


def _scripted_model(args: argparse.Namespace) -> int:
    from bastion.agents.model_server import serve

    serve(args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bastion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    collector = commands.add_parser("collector", help="run the collector: OTLP intake, store and API")
    s.add_collector_options(collector)
    collector.set_defaults(run=_collector)

    scripted = commands.add_parser("scripted-model", help="run the offline OpenAI/Anthropic-compatible model")
    s.add_option(scripted, "--host", env="BASTION_SCRIPTED_MODEL_HOST", default="127.0.0.1", help="listen address")
    s.add_option(scripted, "--port", env="BASTION_SCRIPTED_MODEL_PORT", default=9100, cast=int, help="port")
    scripted.set_defaults(run=_scripted_model)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
