"""``python -m pipeline.testing write [--shape tiny|real] DIR``: random-weight models to try groundlabel offline;
``train-shapes OUT`` and ``eval-shapes DIR``: the toy models that learned a world of coloured shapes
(``pipeline.testing.train``, docs/toy-models.md).

``write`` saves a random-weight copy of the detector and of MobileSAM (and SAM vit_b for ``--shape real``; with
``--all`` one model of every registered family) the way real weights ship, and prints the environment that makes
``python app.py``, the ML backend and ``python -m pipeline`` use them. Their boxes are random: they show the app
working, not what it finds.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..console import quiet_known_warnings
from .models import write_all


def main(argv: list[str] | None = None) -> int:
    quiet_known_warnings()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("train-shapes", "eval-shapes"):
        from .train import main as train_main

        return train_main(argv)
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.testing", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="save random-weight models and print the environment to use them")
    write.add_argument("directory", type=Path)
    write.add_argument(
        "--shape",
        choices=["tiny", "real"],
        default="tiny",
        help="tiny: toy widths, fast everywhere; real: the real architectures' sizes, for timings",
    )
    write.add_argument(
        "--all",
        action="store_true",
        dest="every",
        help="also one model of every registered family (OWLv2, OmDet-Turbo, SAM 3, SAM 2.1, SAM-HQ, "
        "MM-Grounding-DINO), so every choice in the UI loads offline",
    )
    args = parser.parse_args(argv)
    env = write_all(args.directory.resolve(), args.shape, args.every)
    print("Random-weight models written. Use them with:")
    print("  " + " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items()) + " python app.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
