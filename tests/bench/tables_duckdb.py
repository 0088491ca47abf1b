"""The table benchmark's peer (tests/bench/tables.sh): the same InvoiceItem files merged by DuckDB into a table of
its own database file, the full load with CREATE TABLE AS, each day with one MERGE INTO (matched and deleted: delete;
matched: update; not matched and live: insert). Prints one line per file as table-bench does: key, records,
seconds, rows/s, the table's rows after. With `check`, compares the result with the Delta table the writer left
(every column, as DuckDB's delta extension reads it) and exits non-zero on any difference.

Usage: python tables_duckdb.py merge DIR FIRST LAST | check DIR
"""

import glob
import json
import os
import sys
import time

import duckdb

TYPES = {
    "boolean": "BOOLEAN",
    "decimal": "DECIMAL(38, 9)",
    "date": "DATE",
    "datetime": "TIMESTAMPTZ",
    "text": "VARCHAR",
}


def completions(directory):
    with open(os.path.join(directory, "completions.jsonl")) as lines:
        return [json.loads(line) for line in lines]


def source(directory, completion):
    columns = {c["name"]: TYPES[c["type"]] for c in completion["schema"]["columns"]}
    path = os.path.join(directory, completion["bucket"], completion["key"])
    return (
        f"read_csv('{path}', header = true, columns = {columns!r}, "
        "timestampformat = '%Y-%m-%dT%H:%M:%S%z', dateformat = '%Y-%m-%d')"
    )


def merge(directory, first, last):
    con = duckdb.connect(os.path.join(directory, "duckdb.db"))
    for completion in completions(directory)[first : last + 1]:
        names = [c["name"] for c in completion["schema"]["columns"]]
        deleted, key = completion["schema"]["deleted"]["column"], completion["schema"]["idColumn"]
        live = [n for n in names if n != deleted]
        started = time.perf_counter()
        if completion["full"]:
            listed = ", ".join(f'"{n}"' for n in live)
            con.execute(f"CREATE OR REPLACE TABLE items AS SELECT {listed} FROM {source(directory, completion)}"
                        f' WHERE NOT "{deleted}"')
        else:
            updates = ", ".join(f'"{n}" = s."{n}"' for n in live)
            values = ", ".join(f's."{n}"' for n in live)
            con.execute(
                f"MERGE INTO items USING {source(directory, completion)} AS s"
                f' ON items."{key}" = s."{key}"'
                f' WHEN MATCHED AND s."{deleted}" THEN DELETE'
                f" WHEN MATCHED THEN UPDATE SET {updates}"
                f' WHEN NOT MATCHED AND NOT s."{deleted}" THEN INSERT ({", ".join(chr(34) + n + chr(34) for n in live)})'
                f" VALUES ({values})"
            )
        con.execute("CHECKPOINT")
        seconds = time.perf_counter() - started
        rows = con.execute("SELECT count(*) FROM items").fetchone()[0]
        records = completion["recordCount"]
        print(f"{completion['key']}\t{records}\t{seconds:.3f}\t{records / seconds:.0f}\t{rows}", flush=True)


def check(directory):
    extensions = glob.glob(os.path.join(sys.prefix, "lib/python3*/site-packages/duckdb_ext/extensions/*/*"))
    con = duckdb.connect(os.path.join(directory, "duckdb.db"), config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{extensions[0]}/delta.duckdb_extension'")
    schema = completions(directory)[0]["schema"]
    live = [c["name"] for c in schema["columns"] if c["name"] != schema["deleted"]["column"]]
    # The writer's column names: the object's own fields by name, joined ones with their relation.
    own = schema["idColumn"].split(".")[0]
    written = [n.split(".", 1)[1] if n.startswith(own + ".") else n.replace(".", "_") for n in live]
    ours = ", ".join(f'"{w}" AS "{n}"' for w, n in zip(written, live))
    table = os.path.join(directory, "delta", "InvoiceItem")
    differing = con.execute(
        f"SELECT count(*) FROM ((SELECT * FROM items EXCEPT ALL SELECT {ours} FROM delta_scan('{table}'))"
        f" UNION ALL (SELECT {ours} FROM delta_scan('{table}') EXCEPT ALL SELECT * FROM items))"
    ).fetchone()[0]
    rows = con.execute("SELECT count(*) FROM items").fetchone()[0]
    print(f"rows\t{rows}\tdiffering\t{differing}")
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    if sys.argv[1] == "merge":
        merge(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        check(sys.argv[2])
