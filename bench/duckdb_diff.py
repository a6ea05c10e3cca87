"""The DuckDB side of compare_diff.py, in a process of its own (so its time and memory are
DuckDB's alone): the comparison `diff` makes, as one SQL statement on the same Parquet copies.

A full outer join of the expected and actual copies on the key columns (pk, sk); the rows
whose item_hash differs, or that one side lacks, are written to OUT (Parquet) with their
status, then counted. Prints the counts as one JSON line.

Usage: python bench/duckdb_diff.py EXPECTED_DIR ACTUAL_DIR OUT.parquet
"""

from __future__ import annotations

import json
import sys

import duckdb

SQL = """
COPY (
  SELECT coalesce(e.pk, a.pk) AS pk, coalesce(e.sk, a.sk) AS sk,
         CASE WHEN a.pk IS NULL THEN 'missing' WHEN e.pk IS NULL THEN 'unexpected'
              ELSE 'changed' END AS status
  FROM read_parquet('{expected}/*.parquet') e
  FULL OUTER JOIN read_parquet('{actual}/*.parquet') a ON e.pk = a.pk AND e.sk = a.sk
  WHERE e.item_hash IS DISTINCT FROM a.item_hash
) TO '{out}' (FORMAT parquet)
"""


def main(expected: str, actual: str, out: str) -> None:
    con = duckdb.connect()
    con.execute(SQL.format(expected=expected, actual=actual, out=out))
    rows = con.execute(f"SELECT status, count(*) FROM read_parquet('{out}') GROUP BY 1").fetchall()
    print(json.dumps(dict(rows)))


if __name__ == "__main__":
    main(*sys.argv[1:4])
