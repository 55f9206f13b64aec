"""Command line: `python -m chatbot say --user NAME "message"`.

Prints the reply, and nothing else, on stdout; logs and notes go to stderr, so
scripts and benchmarks can read stdout as the answer.
"""

from __future__ import annotations

import argparse
import logging
import sys

from storage import StoreError

from .agent import Agent, MessageError
from .config import ConfigError
from .loading import ModelLoadError

DEFAULT_CONFIG = "configs/default.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatbot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    say = commands.add_parser("say", help="run one turn and print the reply")
    say.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config (default: %(default)s)")
    say.add_argument("--db", default=None, help="SQLite file (default: the config's store.path)")
    say.add_argument("--user", required=True, help="whose conversation this turn belongs to")
    say.add_argument("message", help="what the user says")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        agent = Agent.from_config(args.config, db=args.db)
    except (ConfigError, StoreError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        print(agent.chat(args.user, args.message))
    except (MessageError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
