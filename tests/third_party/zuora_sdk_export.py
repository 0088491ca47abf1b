"""Exports from the simulator with Zuora's official Python SDK (zuora-sdk), a client this project did not write.

Usage: python zuora_sdk_export.py BASE_URL

A full stateful export of Account, then changes made through the simulator's control API (one delete, updates,
inserts), then an incremental export that must hold the changed rows and the deleted row flagged `true` in the
first column. Prints a JSON summary; any mismatch raises, so the exit status is non-zero.
"""

import csv
import io
import json
import sys
import time
import urllib.request

from zuora_sdk import Configuration
from zuora_sdk.models import CreateBatchQueryJobRequest, CreateBatchQueryRequest, DeletedRecord
from zuora_sdk.zuora_client import ZuoraClient

BASE = sys.argv[1].rstrip("/")
QUERY = "select Id, Name, Notes, UpdatedDate from Account"


def control(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def export(aggregate, files):
    request = CreateBatchQueryJobRequest(
        format="csv", version="1.1", name="sdk-check", encrypted="none", use_query_labels=True,
        date_time_utc=True, partner="sdk-partner", project="sdk-project",
        queries=[CreateBatchQueryRequest(
            name="Account", query=QUERY, type="zoqlexport",
            deleted=DeletedRecord(column="IsDeleted", format="Boolean"))])
    job = aggregate.create_batch_query(request)
    assert job.id and len(job.id) == 32, f"job id {job.id!r}"
    for _ in range(600):
        job = aggregate.get_batch_query_job(job.id)
        if job.status in ("completed", "error", "aborted", "cancelled"):
            break
        time.sleep(0.1)
    assert job.status == "completed", f"job ended {job.status}"
    batch = job.batches[0]
    body = bytes(files.get_files(batch.file_id)).decode("utf-8")
    rows = list(csv.reader(io.StringIO(body, newline="")))
    header, records = rows[0], rows[1:]
    assert len(records) == batch.record_count, f"{len(records)} records, recordCount {batch.record_count}"
    return batch, header, records


def main():
    client = ZuoraClient("0b9e5d6c-1f3a-4e2b-9c8d-7a6f5e4d3c2b", "sim-client-secret", env=None, config=Configuration(host=BASE))
    client.initialize()
    try:
        aggregate, files = client.aggregate_queries_api(), client.files_api()
        full, header, records = export(aggregate, files)
        assert full.full is True, "first export must be a full load"
        assert header == ["Account.IsDeleted", "Account.Id", "Account.Name", "Account.Notes", "Account.UpdatedDate"], header
        assert all(r[0] == "false" for r in records), "a full load has no deleted rows"

        changes = control("POST", "/sim/objects/Account/mutations", {"insert": 3, "update": 2, "delete": 1})
        control("POST", "/sim/clock/advance", {"seconds": 60})
        increment, _, changed = export(aggregate, files)
        assert increment.full is False, "second export must be incremental"
        deleted = [r[1] for r in changed if r[0] == "true"]
        live = sorted(r[1] for r in changed if r[0] == "false")
        assert deleted == changes["deleted"], (deleted, changes["deleted"])
        assert live == sorted(changes["inserted"] + changes["updated"]), (live, changes)
        print(json.dumps({"full_records": len(records), "incremental_records": len(changed), "deleted": deleted}))
    finally:
        client.stop_auto_auth()


if __name__ == "__main__":
    main()
