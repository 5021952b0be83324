"""The peer of ``modelyard batch``: a plain loop calling ONNX Runtime on the same record batches.

    python bench/batch/plain.py MODEL.onnx INPUT.parquet [--write OUT.parquet] [--batch-rows N]

What a person writes by hand: ``ParquetFile.iter_batches`` over the 20 feature columns (with
modelyard's reader options, a 1 MiB buffered stream), the columns stacked into a float32
matrix, ``InferenceSession.run`` with ONNX Runtime's default session options. With ``--write``
it also reads the ``id`` column and writes ``id`` + the prediction to a Parquet file (the same
work a batch job does). Prints one JSON line: rows, seconds of the loop (session creation
excluded), rows/s and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import onnxruntime as ort
import orjson
import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("input")
    parser.add_argument("--write", default=None)
    parser.add_argument("--batch-rows", type=int, default=65_536)
    args = parser.parse_args()
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name
    # The reader options modelyard uses (a 1 MiB buffered stream instead of whole column chunks):
    # without them this loop is slower and needs 3x the memory, and the comparison would
    # measure the reader settings instead of the job's machinery.
    pf = pq.ParquetFile(args.input, buffer_size=1 << 20, pre_buffer=False)
    features = [n for n in pf.schema_arrow.names if n != "id"]
    columns = ["id", *features] if args.write else features
    writer = None
    rows = 0
    started = time.perf_counter()
    for batch in pf.iter_batches(batch_size=args.batch_rows, columns=columns):
        x = np.column_stack([batch.column(n).to_numpy() for n in features]).astype(np.float32)
        (y,) = session.run([output_name], {input_name: x})
        if args.write:
            out = pa.record_batch([batch.column("id"), pa.array(y.reshape(-1))], ["id", "y"])
            if writer is None:
                writer = pq.ParquetWriter(args.write, out.schema)
            writer.write_batch(out)
        rows += batch.num_rows
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        orjson.dumps(
            {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "rss": peak}
        ).decode()
    )


if __name__ == "__main__":
    main()
