"""Storage: the only layer that speaks SQL (SQLAlchemy 2.0 + Alembic)."""

# Write transactions one process runs at once (more queue for a thread; db.Database). Here,
# not in db.py, so that config can name them without loading SQLAlchemy and psycopg into
# every `numbind` command. Each write transaction holds row locks (the log head's last of
# all) while its Python work waits for the GIL, so more threads than cores make every lock
# holder wait behind the others: on PostgreSQL, the 100,000-order reissue (bench.reissue,
# one process, 2 cores) took 22.0-22.7 s to its last ack with 8 threads, 19.0 s with 4,
# 16.2 s with 2 and 17.4 s with 1, its server CPU falling from 13.1 s to 9.8 s at 2.
# SQLite runs one writer at a time anyway (the federation bench: the same within noise).
# Several processes each run this many.
WRITE_THREADS = 2
MAX_WRITE_THREADS = 64

# PostgreSQL: how long a session may sit idle inside a transaction before the server ends
# it (idle_in_transaction_session_timeout; 0: never). A registry process that hangs (stopped,
# swapping, its host cut off) while holding a row lock otherwise stops every process that
# needs that row, and some rows are needed by all: the local applier's cursor, the lifecycle
# log's head, the log head. A reviewer's SIGSTOP of a process mid-apply held a report sent
# to another process for as long as the pause (20 s, and without limit: no timeout was set).
# The registry's own transactions never idle for more than a few hundred milliseconds.
IDLE_TIMEOUT_SECONDS = 60.0
