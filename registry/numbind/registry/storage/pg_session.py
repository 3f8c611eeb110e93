"""What a PostgreSQL session of the registry is set up with: when its connection opens (a
name, keepalives both ways, the idle-in-transaction limit, no JIT) and per transaction (the
planner settings two kinds of statement need). storage.db attaches the first to its engine;
storage modules call `custom_plans` and `index_plans`."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy.orm import Session


# libpq's TCP keepalives on every PostgreSQL connection: a server that vanished (its host
# down, the network cut) is noticed in about 25 s (10 s idle, then 3 probes 5 s apart)
# instead of the operating system's two hours, and a call fails UNAVAILABLE and is retried
# rather than hanging. Its name in pg_stat_activity tells the processes apart.
def pg_connect_args() -> dict[str, Any]:
    return {
        "application_name": f"numbind[{os.getpid()}]",
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }


def _milliseconds(seconds: float) -> int:
    """PostgreSQL's unit for the limit; a limit under 1 ms is 1 ms, not 0 (which is off)."""
    return 0 if seconds == 0 else max(1, round(seconds * 1000))


def pg_session_settings(idle_timeout_seconds: float) -> list[str]:
    """What each connection sets for its session, server side. The same keepalives the
    other way (the server notices a registry host that vanished and ends its session,
    releasing its locks), and the idle-in-transaction limit (storage.IDLE_TIMEOUT_SECONDS:
    a process that hangs holding a lock every process needs)."""
    return [
        f"SET idle_in_transaction_session_timeout = {_milliseconds(idle_timeout_seconds)}",
        *SERVER_KEEPALIVES,
    ]


# The server's side of the keepalives (each connection, the LISTEN one too).
SERVER_KEEPALIVES = (
    "SET tcp_keepalives_idle = 10",
    "SET tcp_keepalives_interval = 5",
    "SET tcp_keepalives_count = 3",
)


def on_pg_connect(dbapi_conn: Any, record: Any, session_settings: list[str]) -> None:
    """A new PostgreSQL connection: JIT off, and a note of whether it has PostgreSQL's
    planner settings. Each on its own: an engine that refuses one keeps the connection as it
    was for it.

    No JIT: the registry's statements are short; a plan estimated on statistics older than
    a burst of writes (ANALYZE runs a minute or more behind) can cost past jit_above_cost,
    and then compiling takes seconds: a feed read of 250 events whose plan ran in 26 ms
    spent 4,963 ms in JIT (PostgreSQL 15's default jit=on, during a 100,000-order reissue).
    Planner settings (`plan_cache_mode`, PostgreSQL 12 on, and the `enable_*` switches):
    only a connection that has them gets `custom_plans`' and `index_plans`' settings, which
    elsewhere would abort the transaction."""
    import psycopg  # here: only PostgreSQL engines call this; SQLite processes never load it

    def runs(statement: str) -> bool:
        try:
            dbapi_conn.execute(statement)
            dbapi_conn.commit()
            return True
        except psycopg.Error:  # an engine without the setting: the connection as it was
            dbapi_conn.rollback()
            return False

    runs("SET jit = off")
    for setting in session_settings:
        runs(setting)
    record.info[_PLANNER_SETTINGS] = runs(
        "SELECT current_setting('plan_cache_mode'), current_setting('enable_material')"
    )


_PLANNER_SETTINGS = "numbind_planner_settings"


_PLANS_SENT = "numbind_plans_sent"


def _plans(session: Session, settings: str) -> None:
    """Send `settings` (planner settings for the rest of the transaction) where the
    connection has them, once per transaction: an ack's lookup and its writes both ask, and
    a stream may read twice in one. Sent again after other settings replaced them, and in a
    savepoint (its rollback undoes what was set in it)."""
    conn = session.connection()
    if conn.dialect.name != "postgresql" or not conn.connection.info.get(_PLANNER_SETTINGS):
        return
    transaction = session.get_nested_transaction() or session.get_transaction()
    if session.info.get(_PLANS_SENT) == (transaction, settings):
        return
    conn.exec_driver_sql(settings)
    session.info[_PLANS_SENT] = (transaction, settings)


_CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"


def custom_plans(session: Session) -> None:
    """PostgreSQL: the rest of this transaction plans each statement for its parameters and
    the tables as they are now, instead of reusing a generic plan.

    psycopg prepares a statement once it has run 5 times on a connection, and PostgreSQL
    then keeps one generic plan for it, made for the tables as they were at that moment.
    Early in a reissue `orders` is nearly empty. The stream's delivery marks and acks, joins
    over that growing table, call this; other statements keep their cached plans
    (unprepared, a holder query took 1-2 ms longer at p50)."""
    _plans(session, _CUSTOM_PLANS)


# What `index_plans` turns off for the rest of a transaction: every plan node that reads a
# whole table or a whole side of a join; and the one plan left is cached.
_INDEX_PLANS = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), " + ", ".join(
    f"set_config('enable_{node}', 'off', true)"
    for node in ("seqscan", "bitmapscan", "hashjoin", "mergejoin", "material", "sort")
)


def index_plans(session: Session) -> None:
    """PostgreSQL: the rest of this transaction is planned as nested loops over index probes
    (and merge appends of partitions' ordered index scans), whatever the statistics say.

    For a read that joins a page of rows (a feed page: orders and their bindings and log
    leaves) to tables that grow by 100,000 rows in seconds. Its statistics are then
    minutes old: ANALYZE runs behind, and never on a partitioned parent. On statistics from
    before a reissue, PostgreSQL joined each feed entry (then a row of its own) to a
    materialised sequential scan of every `orders` partition: 1.7 s a read, 731-734 s of
    PostgreSQL's time in a reissue (last ack 114 and 118 s, against 27 s when the plan was
    right). Turning those nodes off leaves one plan: a probe of each table's primary key
    per row, one partition each (run-time pruning on the token), which is right at any
    table size.

    That plan is also safe to cache, so it keeps a generic plan (force_generic_plan; left
    to itself, PostgreSQL kept replanning the feed read: 2.6-4.2 s of planning a reissue,
    1.1-2.7 s with this). What is left most likely comes from autoanalyze (not measured
    apart): an ANALYZE of a table a statement reads drops its cached plans on every
    connection, and a reissue analyzes many of the 48 partitions the feed read joins.
    Preparing the read at its first run instead of psycopg's fifth changed nothing. A
    `LIMIT` must be a literal under it (see storage.feed.page_limit).

    Use it in a transaction of its own (a read): the settings last until it ends."""
    _plans(session, _INDEX_PLANS)
