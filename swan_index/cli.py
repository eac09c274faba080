"""The ``swan`` command line: one module per subcommand, registered here.

Each command module has a docstring (its ``--help``), ``add_args(parser)`` and
``main(args) -> int`` (the exit code). They live in :mod:`swan_index.commands`,
except ``serve`` and ``demo``, which live with the server in
:mod:`dashboard.commands` (so that ``swan_index`` never imports the dashboard; the
registry below names them only as strings, and imports them when the parser is
built).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: Subcommands and their modules, in the order ``swan --help`` lists them.
COMMANDS = {
    "info": "swan_index.commands.info",
    "ingest": "swan_index.commands.ingest",
    "search": "swan_index.commands.search",
    "layout": "swan_index.commands.layout",
    "reencode": "swan_index.commands.reencode",
    "check": "swan_index.commands.check",
    "serve": "dashboard.commands.serve",
    "demo": "dashboard.commands.demo",
    "dataset": "swan_index.commands.dataset",
    "train": "swan_index.commands.train",
    "eval": "swan_index.commands.eval",
    "train-prior": "swan_index.commands.train_prior",
    "denoise": "swan_index.commands.denoise",
    "complete": "swan_index.commands.complete",
    "generate": "swan_index.commands.generate",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="swan",
        description="Cryo-SWAN search: latent-space search of cryo-EM density maps.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip()
        cmd = sub.add_parser(
            name,
            help=doc.splitlines()[0] if doc else name,
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_args(cmd)
        cmd.set_defaults(func=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``swan`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # e.g. `swan info --json ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
