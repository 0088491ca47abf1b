"""Reads a Delta table with readers this project did not write: DuckDB (its delta extension, loaded from the
duckdb-ext-delta package: DuckDB cannot download extensions here) and delta-rs's Python package. Prints, as JSON,
each reader's rows (Id -> column -> text; nulls and the writer's _zle_executed_at left out) and the table's version.

Usage: python read_delta.py TABLE_DIR
       python read_delta.py s3://BUCKET/PREFIX/ ENDPOINT   (delta-rs's Python package only, on a local S3 server;
                                                           credentials and region from the AWS_* variables)
"""

import glob
import json
import os
import sys
from decimal import Decimal

import duckdb
from deltalake import DeltaTable

VERSION_COLUMN = "_zle_executed_at"


def text(value):
    if isinstance(value, Decimal):
        digits = format(value, "f")
        return digits.rstrip("0").rstrip(".") if "." in digits else digits
    return str(value)


def rows(names, records):
    out = {}
    for record in records:
        row = {name: text(value) for name, value in zip(names, record) if value is not None and name != VERSION_COLUMN}
        out[row["Id"]] = row
    return out


def main_s3(url, endpoint):
    options = {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": os.environ["AWS_REGION"]}
    table = DeltaTable(url, storage_options=options)
    arrow = table.to_pyarrow_table()
    python = rows(arrow.column_names, [tuple(r.values()) for r in arrow.to_pylist()])
    print(json.dumps({"deltalake": python, "version": table.version()}))


def main(path):
    extensions = glob.glob(os.path.join(sys.prefix, "lib/python3*/site-packages/duckdb_ext/extensions/*/*"))
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{extensions[0]}/delta.duckdb_extension'")
    cursor = con.execute(f"SELECT * FROM delta_scan('{path}')")
    duck = rows([d[0] for d in cursor.description], cursor.fetchall())
    table = DeltaTable(path)
    arrow = table.to_pyarrow_table()
    python = rows(arrow.column_names, [tuple(r.values()) for r in arrow.to_pylist()])
    print(json.dumps({"duckdb": duck, "deltalake": python, "version": table.version()}))


if __name__ == "__main__":
    if len(sys.argv) == 3:
        main_s3(sys.argv[1], sys.argv[2])
    else:
        main(sys.argv[1])
