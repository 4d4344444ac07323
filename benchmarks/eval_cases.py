"""Run ``photoremix eval`` on the shared evaluation photos.

    python benchmarks/eval_cases.py [CASES.json] [photoremix eval options...]

Defaults: --root $PHOTOREMIX_PHOTOS_DIR, else ../shared/data/photos beside the repository;
CASES.json = <root>/cases.json. Outputs go to --out (default ./eval-out, gitignored): they
are made from photos that must never be committed or published.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from photoremix.evaluation.command import eval_command

REPOSITORY = Path(__file__).resolve().parents[1]


def default_root() -> Path:
    configured = os.environ.get("PHOTOREMIX_PHOTOS_DIR")
    return Path(configured) if configured else REPOSITORY.parent / "shared" / "data" / "photos"


def main(arguments: list[str]) -> None:
    if "--root" in arguments:
        root = Path(arguments[arguments.index("--root") + 1])
    else:
        root = default_root()
        arguments = [*arguments, "--root", str(root)]
    if not any(argument.endswith(".json") for argument in arguments):
        arguments = [str(root / "cases.json"), *arguments]
    eval_command.main(args=arguments, prog_name="eval_cases.py")


if __name__ == "__main__":
    main(sys.argv[1:])
