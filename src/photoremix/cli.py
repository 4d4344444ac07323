"""The ``photoremix`` command line: a thin shell over the library."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from photoremix.engines import EngineError, RemixRequest, get_engine
from photoremix.imaging import ImageError, decode_image, encode_image, output_size_2k

console = Console(stderr=True, soft_wrap=True)  # no wrapping inside file paths


def _fail(message: str, code: int = 2) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}")
    sys.exit(code)


def _load(path: Path, role: str) -> np.ndarray:
    try:
        return decode_image(path)
    except FileNotFoundError:
        _fail(f"{role} image not found: {path}")
    except IsADirectoryError:
        _fail(f"{role} image path is a directory: {path}")
    except OSError as error:
        _fail(f"cannot read {role} image {path}: {error.strerror or error}")
    except ImageError as error:
        _fail(f"{role} image {path}: {error}")


def output_paths(out: Path, count: int, fmt: str) -> list[Path]:
    """``out`` itself for one output; ``name_1.ext`` ... ``name_N.ext`` for several."""
    out = (
        out.with_suffix(f".{fmt}")
        if out.suffix.lower().lstrip(".") not in ("jpg", "jpeg", "png")
        else out
    )
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{i + 1}{out.suffix}") for i in range(count)]


@click.group()
@click.version_option(package_name="photoremix")
def main() -> None:
    """Restyle photos to match a reference image, keeping the people recognisable."""


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.argument("reference_path", metavar="REFERENCE", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output file; with -n > 1, NAME_1.ext ... NAME_N.ext.",
)
@click.option(
    "-n",
    "--num-outputs",
    default=1,
    show_default=True,
    type=click.IntRange(1, 4),
    help="Number of variations (1-4).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jpg", "png"]),
    default=None,
    help="Output format [default: from the output name, else jpg].",
)
@click.option(
    "--prompt", default=None, help="Directives, e.g. 'keep the original background, warmer'."
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Base seed; output i uses seed+i."
)
@click.option(
    "--style-strength",
    default=None,
    type=click.FloatRange(0.0, 1.0),
    help="Overall strength of the look transfer, 0-1.",
)
@click.option(
    "--engine", "engine_name", default="classic", show_default=True, help="Engine to use."
)
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the per-image reports as JSON to this file.",
)
def remix(
    input_path: Path, reference_path: Path, out: Path, num_outputs: int, fmt: str | None,
    prompt: str | None, seed: int, style_strength: float | None, engine_name: str,
    report: Path | None,
) -> None:  # fmt: skip
    """Restyle INPUT with the look of REFERENCE and write the result to OUT."""
    fmt = fmt or ("png" if out.suffix.lower() == ".png" else "jpg")
    content = _load(input_path, "input")
    reference = _load(reference_path, "reference")
    paths = output_paths(out, num_outputs, fmt)
    if not paths[0].parent.exists():
        _fail(f"output folder does not exist: {paths[0].parent}")
    try:
        engine = get_engine(engine_name)
    except EngineError as error:
        _fail(str(error))
    request = RemixRequest(
        content=content,
        reference=reference,
        output_size=output_size_2k(content.shape[1], content.shape[0]),
        prompt=prompt,
        num_outputs=num_outputs,
        seed=seed,
        style_strength=style_strength,
    )
    with Progress(
        TextColumn("[bold]remixing"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console, disable=num_outputs == 1,
    ) as progress:  # fmt: skip
        task = progress.add_task("remix", total=num_outputs)
        try:
            outputs = engine.remix(
                request, progress=lambda done, _: progress.update(task, completed=done)
            )
        except EngineError as error:
            _fail(f"the {engine_name} engine failed: {error}", code=1)
    for path, output in zip(paths, outputs, strict=True):
        path.write_bytes(encode_image(output.image, fmt))  # type: ignore[arg-type]
        r = output.report
        height, width = output.image.shape[:2]
        console.print(f"wrote {path}  ({width}x{height}, seed {r.seed}: {r.variation_description})")
        for instruction in r.unhandled_instructions:
            console.print(f"  [yellow]not understood by the {r.engine} engine:[/] {instruction!r}")
    if report is not None:
        report.write_text(json.dumps([asdict(o.report) for o in outputs], indent=2))


def _register_subcommands() -> None:
    from photoremix.commands.keys import keys_group
    from photoremix.commands.serve import serve_command
    from photoremix.evaluation.command import eval_command

    main.add_command(eval_command, name="eval")
    main.add_command(keys_group, name="keys")
    main.add_command(serve_command, name="serve")


_register_subcommands()

if __name__ == "__main__":
    main()
