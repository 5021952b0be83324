"""Commands that package and optimise registry versions: ``modelyard convert`` (to ONNX, with a
parity check), ``modelyard quantize`` (ONNX Runtime dynamic int8) and ``modelyard profile``
(latency per batch size, operator breakdown). The work is in :mod:`modelyard.optimize`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from modelyard.cli_common import console, load_cli_settings, open_registry, registry_option
from modelyard.errors import InvalidInputError
from modelyard.optimize import defaults
from modelyard.registry.records import ModelVersion
from modelyard.registry.registry import Registry
from modelyard.runtime import Runtime
from modelyard.settings import Settings

if TYPE_CHECKING:
    from modelyard.optimize.samples import Sample

F = TypeVar("F", bound=Callable[..., Any])
MODEL_ARG = "NAME[@ALIAS|:VERSION]"


def register(group: click.Group) -> None:
    """Add this module's commands to the ``modelyard`` group."""
    group.add_command(convert)
    group.add_command(quantize)
    group.add_command(profile)


def _sample_options(func: F) -> F:
    func = click.option(
        "--rows",
        type=click.IntRange(min=1, max=100_000),
        default=defaults.SAMPLE_ROWS,
        show_default=True,
        help="How many random rows when the sample is random.",
    )(func)
    func = click.option(
        "--sample-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="Real inputs to check or time with (wins over --sample): JSON as for "
        '`modelyard predict --input` ({"input name": rows} or a V2 request body), or '
        ".npz (one array per input name) / .npy (the only input).",
    )(func)
    return click.option(
        "--sample",
        "sample_mode",
        type=click.Choice(["auto", "warmup", "random"]),
        default="auto",
        show_default=True,
        help="Inputs to check or time with: the version's warm-up example (auto: when it has "
        "one), or random rows shaped by its signature.",
    )(func)


def _file_sample(path: Path | None, version: ModelVersion) -> Sample | None:
    """The inputs in ``path`` (see --sample-file) as a sample for ``version``; None without."""
    if path is None:
        return None
    import numpy as np

    from modelyard.cli_predict import parse_inputs, read_payload
    from modelyard.optimize.samples import given_sample

    signature = version.manifest.signature
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        elif suffix == ".npy":
            if len(signature.inputs) != 1:
                raise InvalidInputError(
                    f"{version.ref} has {len(signature.inputs)} inputs: give them as .npz or JSON"
                )
            arrays = {signature.inputs[0].name: np.load(path, allow_pickle=False)}
        else:
            arrays = parse_inputs(read_payload(path.read_text()), signature)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read the sample file {path}: {exc}") from exc
    return given_sample(arrays, signature, f"sample file {path.name}")


def _resolve(reg: Registry, model: str) -> ModelVersion:
    from modelyard.cli_predict import parse_model_ref

    name, ref = parse_model_ref(model)
    return reg.resolve(name, ref)


def _loader(reg: Registry, settings: Settings) -> Callable[[ModelVersion], Runtime]:
    from modelyard.cli_predict import load_runtime

    return lambda version: load_runtime(reg, version, settings)


@click.command(short_help="Convert a sklearn/XGBoost/LightGBM version to ONNX.")
@click.argument("model", metavar=MODEL_ARG)
@click.option("--alias", default=None, help="Point this alias at the new version.")
@click.option(
    "--atol",
    type=click.FloatRange(min=0),
    default=defaults.CONVERT_ATOL,
    show_default=True,
    help="Largest absolute difference allowed in float outputs (labels must all match).",
)
@_sample_options
@registry_option
def convert(
    model: str,
    alias: str | None,
    atol: float,
    sample_mode: str,
    rows: int,
    sample_file: Path | None,
    registry: str | None,
) -> None:
    """Convert a scikit-learn, XGBoost or LightGBM version to ONNX and push it as a new version
    of the same model, only when its outputs match the served version's on a sample (every
    label equal, floats within --atol). Prints the new version, then the parity."""
    from modelyard.app import runtime_options
    from modelyard.optimize.converting import convert_version

    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        version = _resolve(reg, model)
        done = convert_version(
            reg,
            version,
            runtime_options(settings),
            load=_loader(reg, settings),
            atol=atol,
            alias=alias,
            sample_mode=sample_mode,
            rows=rows,
            sample=_file_sample(sample_file, version),
        )
    click.echo(done.pushed.ref)
    click.echo(f"converted {done.source.ref} ({done.source.manifest.runtime}) -> onnx")
    click.echo(f"parity: {done.parity.summary()} (atol {atol:g}) on the {done.sample.describe()}")


@click.command(short_help="Quantise an ONNX version (dynamic int8) into a new version.")
@click.argument("model", metavar=MODEL_ARG)
@click.option("--alias", default=None, help="Point this alias at the new version.")
@click.option(
    "--max-abs-diff",
    type=click.FloatRange(min=0),
    default=defaults.QUANTIZE_MAX_ABS_DIFF,
    show_default=True,
    help="Largest absolute difference allowed in float outputs.",
)
@click.option(
    "--min-agreement",
    type=click.FloatRange(min=0, max=1),
    default=defaults.QUANTIZE_MIN_AGREEMENT,
    show_default=True,
    help="Smallest share of rows whose class (label, or arg-max of probabilities) must agree.",
)
@click.option("--per-channel", is_flag=True, default=False, help="One scale per weight column.")
@click.option(
    "--reduce-range",
    is_flag=True,
    default=False,
    help="7-bit weights: for x86 CPUs without VNNI, where int8 products may saturate.",
)
@_sample_options
@registry_option
def quantize(
    model: str,
    alias: str | None,
    max_abs_diff: float,
    min_agreement: float,
    per_channel: bool,
    reduce_range: bool,
    sample_mode: str,
    rows: int,
    sample_file: Path | None,
    registry: str | None,
) -> None:
    """Quantise an ONNX version with ONNX Runtime's dynamic quantisation (int8 weights) and push
    it as a new version when its outputs stay within the thresholds on a sample. Helps models
    whose time and size are in large MatMul/Conv/Gather weights; measure both versions with
    modelyard profile."""
    from modelyard.app import runtime_options
    from modelyard.optimize.quantizing import QuantizeOptions, quantize_version

    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        version = _resolve(reg, model)
        done = quantize_version(
            reg,
            version,
            runtime_options(settings),
            quantize=QuantizeOptions(per_channel=per_channel, reduce_range=reduce_range),
            max_abs_diff=max_abs_diff,
            min_agreement=min_agreement,
            alias=alias,
            sample_mode=sample_mode,
            rows=rows,
            sample=_file_sample(sample_file, version),
        )
    change = done.bytes_after / done.bytes_before - 1 if done.bytes_before else 0.0
    ops = ", ".join(f"{op} x{n}" for op, n in done.new_ops.items()) or "none"
    click.echo(done.pushed.ref)
    click.echo(
        f"quantized {done.source.ref}: {done.weights_quantized} weight tensors to int8 "
        f"(new ops: {ops})"
    )
    click.echo(f"size: {done.bytes_before:,} -> {done.bytes_after:,} bytes ({change:+.1%})")
    click.echo(f"parity: {done.parity.summary()} on the {done.sample.describe()}")
    if change > -0.1:
        click.echo(
            "note: the file shrank by less than 10%; compare both versions with modelyard "
            "profile before moving traffic"
        )


@click.command(short_help="Time a version's predict per batch size; ONNX operators.")
@click.argument("model", metavar=MODEL_ARG)
@click.option(
    "--batch-sizes", default=defaults.BATCH_SIZES, show_default=True, help="Comma-separated."
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0),
    default=defaults.SECONDS,
    show_default=True,
    help="Time per batch size (at least 5 calls each).",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=defaults.WARMUP_CALLS,
    show_default=True,
    help="Untimed calls.",
)
@click.option(
    "--op-runs",
    type=click.IntRange(min=0),
    default=defaults.OP_RUNS,
    show_default=True,
    help="Runs of the ONNX Runtime profiler (ONNX versions; 0 skips the operator breakdown).",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=defaults.TOP_OPS,
    show_default=True,
    help="Operator types to show.",
)
@_sample_options
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the results as JSON.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write latency vs batch size to this PNG (needs matplotlib).",
)
@registry_option
def profile(
    model: str,
    batch_sizes: str,
    seconds: float,
    warmup: int,
    op_runs: int,
    top: int,
    sample_mode: str,
    rows: int,
    sample_file: Path | None,
    as_json: bool,
    plot: Path | None,
    registry: str | None,
) -> None:
    """Load a version in this process as the server does and time predict per batch size
    (p50, p99, rows/s), with its load time and memory; for ONNX versions, also where ONNX
    Runtime spends the time, per operator type (a separate profiling session)."""
    from modelyard.app import runtime_options
    from modelyard.optimize.profiling import ProfilePlan, profile_version
    from modelyard.optimize.render import plot_latency, print_report
    from modelyard.optimize.timing import LoopLimits, parse_batch_sizes

    plan = ProfilePlan(
        batch_sizes=parse_batch_sizes(batch_sizes),
        limits=LoopLimits(seconds=seconds, warmup=warmup),
        sample_mode=sample_mode,
        rows=rows,
        op_runs=op_runs,
        top=top,
    )
    settings = load_cli_settings(registry=registry)
    err = Console(stderr=True, highlight=False)
    with open_registry(settings) as reg:
        version = _resolve(reg, model)
        plan = dataclasses.replace(plan, sample=_file_sample(sample_file, version))
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            report = profile_version(
                version,
                _loader(reg, settings),
                runtime_options(settings),
                plan,
                timer=time.perf_counter,
                progress=_progress_to(bar, version.ref),
            )
    if plot is not None:
        plot_latency(report, plot)
    if as_json:
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print_report(report, console())
        if plot is not None:
            click.echo(f"plot: {plot}")


def _progress_to(bar: Progress, ref: str) -> Callable[[str, float], None]:
    tasks: dict[str, TaskID] = {}

    def update(label: str, fraction: float) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(f"{ref} {label}", total=1.0)
        bar.update(tasks[label], completed=fraction)

    return update
