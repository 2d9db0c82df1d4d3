"""Drive a PostgreSQL endpoint (idgate or PostgreSQL itself) with psycopg 3.

Usage: IDGATE_DSN='host=127.0.0.1 port=6432 dbname=... user=... password=TOKEN' \
       .venv/bin/python tests/drivers/psycopg_check.py

Exercises what real applications do through a pooler/gateway: server-side
prepared statements with parameters (extended protocol, reused), a temporary
table, COPY FROM STDIN and COPY TO STDOUT, and a rolled-back transaction.
Prints "psycopg ok" last and exits 0; on any mismatch prints the reason to
stderr and exits 1 (2 for a usage error).
"""

import os
import sys

import psycopg
from psycopg import pq

ROWS = 1000


class Mismatch(Exception):
    pass


def expect(what, got, want):
    if got != want:
        raise Mismatch(f"{what}: got {got!r}, want {want!r}")


def row(i):
    # Text that COPY must escape: tab, newline, backslash, quote, non-ASCII.
    return (i, f"name {i}\tline\nnext \\ 'q' é", i * 1.5 if i % 7 else None)


def check_prepared(conn):
    with conn.cursor() as cur:
        for i in range(6):
            cur.execute("SELECT %s::int + 1, %s::text || 'x'", (i, f"v{i}"), prepare=True)
            expect(f"prepared statement, run {i}", cur.fetchone(), (i + 1, f"v{i}x"))
        cur.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ("SELECT $1::int + 1%",),
        )
        (count,) = cur.fetchone()
        # prepare=True makes psycopg Parse a named statement once and then only
        # Bind/Execute it. Behind a transaction-mode pool the name may live on
        # another backend, so the count is reported, not asserted.
        print(f"server-side prepared statements visible on this backend: {count}")


def check_copy(conn):
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE idgate_copy_check (id int PRIMARY KEY, name text NOT NULL, score float8)"
        )
        with cur.copy("COPY idgate_copy_check (id, name, score) FROM STDIN") as copy:
            for i in range(ROWS):
                copy.write_row(row(i))
        expect("rows after COPY FROM STDIN", cur.rowcount, ROWS)

        cur.execute("SELECT count(*), sum(id) FROM idgate_copy_check")
        expect("count and sum after COPY FROM", cur.fetchone(), (ROWS, ROWS * (ROWS - 1) // 2))

        back = []
        with cur.copy("COPY (SELECT id, name, score FROM idgate_copy_check ORDER BY id) TO STDOUT") as copy:
            copy.set_types(["int4", "text", "float8"])
            for r in copy.rows():
                back.append(tuple(r))
        expect("rows from COPY TO STDOUT", len(back), ROWS)
        for i, got in enumerate(back):
            expect(f"row {i} from COPY TO STDOUT", got, row(i))


def check_rollback(conn):
    # Everything that must vanish is created inside the rolled-back
    # transaction, so this holds through a transaction-mode pool as well.
    with conn.cursor() as cur:
        conn.commit()
        with conn.transaction(force_rollback=True):
            cur.execute("CREATE TEMP TABLE idgate_tx_check (v int)")
            cur.execute("INSERT INTO idgate_tx_check VALUES (1), (2), (3)")
            cur.execute("SELECT count(*) FROM idgate_tx_check")
            expect("rows inside the transaction", cur.fetchone()[0], 3)
        expect("transaction status after rollback", conn.info.transaction_status, pq.TransactionStatus.IDLE)
        cur.execute("SELECT to_regclass('pg_temp.idgate_tx_check') IS NULL")
        expect("table created in the rolled-back transaction is gone", cur.fetchone()[0], True)
        conn.rollback()

        # An error inside a transaction aborts it; ROLLBACK recovers the session.
        try:
            cur.execute("SELECT 1 / 0")
            raise Mismatch("division by zero did not fail")
        except psycopg.errors.DivisionByZero:
            pass
        expect("transaction status after an error", conn.info.transaction_status, pq.TransactionStatus.INERROR)
        conn.rollback()
        cur.execute("SELECT 42")
        expect("query after rollback of a failed transaction", cur.fetchone()[0], 42)
        conn.commit()


def main():
    dsn = os.environ.get("IDGATE_DSN")
    if not dsn:
        print("IDGATE_DSN is not set (a libpq connection string; password = token)", file=sys.stderr)
        return 2
    try:
        with psycopg.connect(dsn, connect_timeout=10, application_name="idgate-psycopg-check") as conn:
            print(f"connected: server_version={conn.info.server_version} user={conn.info.user}")
            check_prepared(conn)
            check_copy(conn)
            conn.commit()
            check_rollback(conn)
    except Mismatch as e:
        print(f"psycopg MISMATCH: {e}", file=sys.stderr)
        return 1
    except psycopg.Error as e:
        print(f"psycopg ERROR: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("psycopg ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
