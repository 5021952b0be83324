"""How ``modelyard profile`` results look: rich tables for people, a PNG chart with matplotlib."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from modelyard.errors import MissingDependencyError
from modelyard.optimize.op_profile import OpBreakdown
from modelyard.optimize.profiling import ProfileReport


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def batch_table(report: ProfileReport) -> Table:
    table = Table(title=f"{report.ref} ({report.runtime}): predict latency per batch")
    table.add_column("batch", justify="right")
    table.add_column("calls", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("mean ms", justify="right")
    table.add_column("rows/s", justify="right")
    for b in report.batches:
        table.add_row(
            str(b.batch_size),
            str(b.iterations),
            _ms(b.p50_s),
            _ms(b.p99_s),
            _ms(b.mean_s),
            f"{b.rows_per_s:,.0f}",
        )
    return table


def ops_table(ops: OpBreakdown) -> Table:
    table = Table(title=f"kernel time per operator (ORT profiler, batch {ops.batch_size})")
    table.add_column("operator")
    table.add_column("calls", justify="right")
    table.add_column("total ms", justify="right")
    table.add_column(f"µs / run ({ops.runs})", justify="right")
    table.add_column("share", justify="right")
    for op in ops.ops:
        per_run = op.total_us / ops.runs if ops.runs else 0.0
        table.add_row(
            op.op_type,
            str(op.calls),
            f"{op.total_us / 1e3:.3f}",
            f"{per_run:.1f}",
            f"{op.share:.1%}",
        )
    if ops.other_types:
        table.caption = f"{ops.other_types} more operator types not shown (--top)"
    return table


def print_report(report: ProfileReport, out: Console) -> None:
    out.print(
        f"{report.ref}: load {report.load_s * 1e3:.1f} ms (fetch + load), warm-up "
        f"{report.warmup_s * 1e3:.1f} ms, memory {report.memory_bytes / 2**20:.2f} MiB "
        f"({report.memory_bytes:,} bytes); sample: {report.sample}"
    )
    out.print(batch_table(report))
    if report.ops is not None:
        out.print(ops_table(report.ops))
    for note in report.notes:
        out.print(note)


def plot_latency(report: ProfileReport, path: Path) -> Path:
    """Write p50 / p99 latency against batch size (log scale) as a PNG."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "matplotlib is not installed; --plot needs it: pip install matplotlib "
            "(it is in modelyard's dev extra)"
        ) from exc
    sizes = [b.batch_size for b in report.batches]
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.subplots()
    ax.plot(sizes, [b.p50_s * 1e3 for b in report.batches], marker="o", label="p50")
    ax.plot(sizes, [b.p99_s * 1e3 for b in report.batches], marker="o", label="p99")
    if len(sizes) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, labels=[str(size) for size in sizes])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("batch size (rows)")
    ax.set_ylabel("predict latency (ms)")
    ax.set_title(f"{report.ref} ({report.runtime})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
