#!/usr/bin/env python3
"""Compare two labels datasets row by row: A (e.g. the union of shard
outputs, OUT/shard-*-of-N/) against B (a single-process `labelgen label`).

Usage: compare_labels.py A B [--tolerance 1e-6]

Both are read with pyarrow.dataset (directories are searched recursively;
names starting with "." or "_" are skipped, as labelgen skips them) and
sorted by (dialogue_id, turn_index). The key pairs must be unique and the
same; every non-float value (labels, goal ids, slot spans and texts, model
and run ids) must be equal; float columns (the probabilities, also inside
slots) may differ by at most --tolerance: labelgen's float32 inference
depends on which dialogues share a batch, so a shard and a single-process
run agree to about one float32 ULP, not bit for bit. Prints the largest
difference per column; exit 0 when equal within the tolerance, 1 otherwise.
Needs pyarrow (python3 -m pip install pyarrow).
"""
import argparse
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

KEYS = ["dialogue_id", "turn_index"]


def load(path):
    table = ds.dataset(path, format="parquet").to_table()
    return table.sort_by([(k, "ascending") for k in KEYS])


def compare(name, x, y, report, rows, differing):
    """Appends (column, 'equal' | max float difference | 'DIFFERENT') to report;
    rows maps each value of x to its table row, and differing collects the
    rows where a float is not bit-identical."""
    if not x.is_null().equals(y.is_null()):
        report.append((name, "DIFFERENT (nulls)"))
        return
    t = x.type
    if pa.types.is_floating(t):
        delta = pc.abs(pc.subtract(x.fill_null(0.0), y.fill_null(0.0)))
        diff = pc.max(delta).as_py()
        report.append((name, diff or 0.0))
        differing.update(pc.filter(rows, pc.greater(delta, 0.0)).to_pylist())
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        lx = pc.fill_null(pc.list_value_length(x), 0)
        ly = pc.fill_null(pc.list_value_length(y), 0)
        if not lx.equals(ly):
            report.append((name, "DIFFERENT (list lengths)"))
            return
        parents = pc.list_parent_indices(x)
        compare(name + "[]", x.flatten(), y.flatten(), report, pc.take(rows, parents), differing)
    elif pa.types.is_struct(t):
        for field, cx, cy in zip(t, x.flatten(), y.flatten()):
            compare(name + "." + field.name, cx, cy, report, rows, differing)
    else:
        report.append((name, "equal" if x.equals(y) else "DIFFERENT"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args()
    a, b = load(args.a), load(args.b)
    print(f"A {args.a}: {a.num_rows} rows; B {args.b}: {b.num_rows} rows")
    if a.num_rows != b.num_rows or a.schema.remove_metadata() != b.schema.remove_metadata():
        print("DIFFERENT: row counts or schemas differ")
        return 1
    for t, label in ((a, "A"), (b, "B")):
        if t.group_by(KEYS).aggregate([]).num_rows != t.num_rows:
            print(f"DIFFERENT: {label} has duplicate (dialogue_id, turn_index) rows")
            return 1
    report, differing = [], set()
    rows = pa.array(range(a.num_rows), pa.int64())
    for name in a.column_names:
        compare(name, a[name].combine_chunks(), b[name].combine_chunks(), report, rows, differing)
    ok = True
    exact = True
    for name, result in report:
        if isinstance(result, float):
            exact &= result == 0.0
            ok &= result <= args.tolerance
            print(f"  {name:32} max |A-B| {result:.3g}")
        else:
            ok &= result == "equal"
            print(f"  {name:32} {result}")
    if ok:
        how = ("bit for bit" if exact else f"non-float values exactly, floats within {args.tolerance:g} "
               f"({len(differing)} rows not bit-identical)")
        print(f"EQUAL: {a.num_rows} rows, {how}")
        return 0
    print("DIFFERENT")
    return 1


if __name__ == "__main__":
    sys.exit(main())
