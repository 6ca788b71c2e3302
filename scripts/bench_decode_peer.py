"""python-mysql-replication reading the same binlog range as examples/decode_bench.rs: every row of every
rows event of one table, all values decoded. Prints rows, seconds, rows/s."""
import sys
import time

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

port, log_file, log_pos, table = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
# Only the table of this database (other databases may have tables of the same name).
schema = sys.argv[5] if len(sys.argv) > 5 else None
stream = BinLogStreamReader(
    connection_settings={"host": "127.0.0.1", "port": port, "user": "bv", "passwd": "bv"},
    server_id=9998,
    log_file=log_file,
    log_pos=log_pos,
    resume_stream=True,
    blocking=False,
    only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
    only_tables=[table],
    only_schemas=[schema] if schema else None,
)
rows = 0
started = time.monotonic()
for event in stream:
    for _ in event.rows:
        rows += 1
secs = time.monotonic() - started
stream.close()
print(f"{rows} {secs:.3f} {rows / secs:.0f}")
