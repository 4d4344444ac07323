"""``photoremix eval``: score the classic engine and its peers on a cases file."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from photoremix.engines.base import Engine, EngineError
from photoremix.evaluation.harness import (
    CaseRun,
    EvaluationError,
    load_cases,
    run_evaluation,
    summarize,
    summary_table,
    write_contact_sheets,
    write_csv,
)
from photoremix.evaluation.peers import PEER_NAMES, Peer, available_peers, unavailable_peers

ENGINE_METHOD = "classic"
THUMBNAIL_HEIGHT = 256
RESULTS_CSV = "results.csv"


def _comma_list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _choose_methods(requested: list[str], console: Console) -> tuple[bool, dict[str, Peer]]:
    """(run the engine?, peers to run) from --methods; default: engine + available peers."""
    available = available_peers()
    missing = unavailable_peers()
    if not requested:
        for name, reason in missing.items():
            console.print(f"[yellow]peer {name} unavailable: {reason}[/yellow]")
        return True, available
    known = (ENGINE_METHOD, *PEER_NAMES)
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise click.BadParameter(
            f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(known)}",
            param_hint="--methods",
        )
    not_installed = [f"{name} ({missing[name]})" for name in requested if name in missing]
    if not_installed:
        raise click.UsageError(f"unavailable method(s): {'; '.join(not_installed)}")
    return ENGINE_METHOD in requested, {
        name: peer for name, peer in available.items() if name in requested
    }


def _load_engine() -> Engine:
    from photoremix.engines import get_engine

    try:
        return get_engine(ENGINE_METHOD)
    except (EngineError, ImportError) as exc:
        raise click.ClickException(
            f"the {ENGINE_METHOD} engine is not available ({exc}); "
            f"run peers only with --methods {','.join(PEER_NAMES)}"
        ) from exc


@click.command("eval")
@click.argument("cases_file", metavar="CASES.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Folder the case paths are relative to [default: the cases file's folder].",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("eval-out"),
    show_default=True,
    help="Folder for results.csv and the contact sheets.",
)
@click.option(
    "--methods",
    help=f"Comma-separated, from {ENGINE_METHOD},{','.join(PEER_NAMES)} "
    "[default: classic and every installed peer].",
)
@click.option("--tags", help="Comma-separated case tags to keep, e.g. portrait-photo.")
@click.option("--limit", type=click.IntRange(min=1), help="Keep the first N cases (after --tags).")
@click.option(
    "--variations",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Outputs the engine renders per case; time is reported per variation.",
)
@click.option(
    "--all-variations",
    is_flag=True,
    help="Score every engine variation, not only variation 0.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Engine base seed.")
@click.option(
    "--contact-sheet/--no-contact-sheet",
    default=True,
    show_default=True,
    help="Write one contact-<tag>.jpg per tag.",
)
@click.option(
    "--style-strength",
    type=click.FloatRange(0.0, 1.0),
    help="Engine style strength 0..1 [default: the engine's].",
)
@click.option(
    "--identity-guard",
    is_flag=True,
    help="Run the engine as the service does: check every output's faces and re-render "
    "drifted ones (PHOTOREMIX_IDENTITY_MAX_DISTANCE, ..._RERENDER_ATTEMPTS).",
)
def eval_command(
    cases_file: Path,
    root: Path | None,
    out_dir: Path,
    methods: str | None,
    tags: str | None,
    limit: int | None,
    variations: int,
    all_variations: bool,
    seed: int,
    contact_sheet: bool,
    style_strength: float | None,
    identity_guard: bool,
) -> None:
    """Remix every case in CASES.json with each method and report style, texture,
    structure and identity metrics (table on screen, per-output CSV, contact sheets)."""
    console = Console(stderr=True)
    use_engine, peers = _choose_methods(_comma_list(methods), console)
    if not use_engine and not peers:
        raise click.UsageError("no method to run; pass --methods")
    try:
        cases = load_cases(cases_file, root, _comma_list(tags) or None, limit)
    except EvaluationError as exc:
        raise click.ClickException(str(exc)) from exc
    if not cases:
        raise click.ClickException(f"{cases_file} lists no cases")
    engine = _load_engine() if use_engine else None
    if engine is not None and identity_guard:
        from photoremix.services.identity import IdentityKeepingEngine
        from photoremix.settings import get_settings

        settings = get_settings()
        engine = IdentityKeepingEngine(
            engine,
            max_distance=settings.identity_max_distance,
            rerender_attempts=settings.identity_rerender_attempts,
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot create output folder {out_dir}: {exc}") from exc

    def report(run: CaseRun, done: int, total: int) -> None:
        timings = "  ".join(f"{r.method} {r.seconds:.2f}s" for r in run.results if r.variation == 0)
        console.print(
            f"[{done}/{total}] {run.case.content} ({run.case.tag}, {run.faces} faces, "
            f"detect {run.detect_seconds:.2f}s)  {timings}"
        )

    try:
        evaluation = run_evaluation(
            cases,
            engine,
            peers,
            variations=variations,
            seed=seed,
            style_strength=style_strength,
            all_variations=all_variations,
            thumbnail_height=THUMBNAIL_HEIGHT if contact_sheet else None,
            on_case=report,
        )
        # Wide enough for every column even when piped to a file (rich defaults to 80).
        Console(width=max(140, Console().width)).print(
            summary_table(evaluation, summarize(evaluation))
        )
        csv_path = out_dir / RESULTS_CSV
        write_csv(evaluation, csv_path)
        console.print(f"per-output results: {csv_path}")
        if contact_sheet:
            for path in write_contact_sheets(evaluation, out_dir):
                console.print(f"contact sheet: {path}")
    except EvaluationError as exc:
        raise click.ClickException(str(exc)) from exc
