"""Drive a MySQL endpoint (idgate's MySQL front end, or MariaDB itself) with a
Python driver: PyMySQL or mysql-connector-python.

Usage: .venv/bin/python tests/drivers/mysql_check.py pymysql|mysql-connector

Settings, from the environment (the same for every check in tests/drivers/):
  HOST      default 127.0.0.1; with CA_FILE the name the certificate is for
            (idgate's development certificate is for `localhost`)
  PORT      default 3306
  USER      the role
  PASSWORD  the token
  DATABASE  default idgate_test (through idgate: the target)
  TABLE     default idgate_test.items, columns (id int, name text), at least
            one row; only read
  AUTH      cleartext (default): the password goes as mysql_clear_password,
            which is what idgate switches every client to; native: the
            driver's defaults, for a direct login to MariaDB
  CA_FILE   TLS, the server certificate verified against this CA (chain and
            host name); without it the connection is plaintext
  COLLATION optional, the connection collation (both drivers); see below
  VERIFY_PREPARE=1  assert, with SHOW SESSION STATUS, that the prepared
            statement was prepared on the server (mysql-connector only)

mysql-connector-python, told by the server version that it talks to MySQL 8
(as idgate says), ends its login with SET NAMES utf8mb4 COLLATE
utf8mb4_0900_ai_ci, which MariaDB before 11.4 does not know (error 1273);
COLLATION=utf8mb4_general_ci (or any MariaDB has) avoids that.

Runs a plain SELECT, a prepared statement with a parameter (server-side with
mysql-connector; PyMySQL has no server-side prepare and interpolates the
parameter), and two transactions, one committed and one rolled back. Prints
the single line `ok <driver>` and exits 0; on failure prints the error to
stderr and exits 1 (2 for a usage error).
"""

import os
import sys

DRIVERS = ("pymysql", "mysql-connector")


class Mismatch(Exception):
    pass


def expect(what, got, want):
    if got != want:
        raise Mismatch(f"{what}: got {got!r}, want {want!r}")


def settings():
    return {
        "host": os.environ.get("HOST", "127.0.0.1"),
        "port": int(os.environ.get("PORT", "3306")),
        "user": os.environ["USER"],
        "password": os.environ["PASSWORD"],
        "database": os.environ.get("DATABASE", "idgate_test"),
        "table": os.environ.get("TABLE", "idgate_test.items"),
        "auth": os.environ.get("AUTH", "cleartext"),
        "ca_file": os.environ.get("CA_FILE") or None,
        "collation": os.environ.get("COLLATION") or None,
        "verify_prepare": os.environ.get("VERIFY_PREPARE") == "1",
    }


def connect_pymysql(s):
    import pymysql

    # PyMySQL answers an AuthSwitchRequest to mysql_clear_password by itself,
    # with or without TLS: AUTH needs no setting here.
    if s["ca_file"]:
        options = {"ssl_ca": s["ca_file"], "ssl_verify_cert": True, "ssl_verify_identity": True}
    else:
        options = {"ssl_disabled": True}
    if s["collation"]:
        options["collation"] = s["collation"]
    return pymysql.connect(
        host=s["host"],
        port=s["port"],
        user=s["user"],
        password=s["password"],
        database=s["database"],
        connect_timeout=10,
        autocommit=True,
        **options,
    )


def connect_connector(s):
    import mysql.connector

    options = {}
    if s["auth"] == "cleartext":
        # Sends the password in clear in the first HandshakeResponse; the
        # driver refuses to do so (and to answer a switch to
        # mysql_clear_password) without TLS: "mysql_clear_password requires SSL".
        options["auth_plugin"] = "mysql_clear_password"
    if s["ca_file"]:
        options.update(ssl_ca=s["ca_file"], ssl_verify_cert=True, ssl_verify_identity=True)
    else:
        options["ssl_disabled"] = True
    if s["collation"]:
        options["collation"] = s["collation"]
    return mysql.connector.connect(
        host=s["host"],
        port=s["port"],
        user=s["user"],
        password=s["password"],
        database=s["database"],
        connection_timeout=10,
        autocommit=True,
        # The C extension on PyPI links OpenSSL 3.2 and does not load on
        # Debian 12: be explicit about using the pure-Python protocol.
        use_pure=True,
        **options,
    )


def stmt_prepare_count(conn):
    cur = conn.cursor()
    cur.execute("SHOW SESSION STATUS LIKE 'Com_stmt_prepare'")
    (_, value) = cur.fetchone()
    cur.close()
    return int(value)


def check_plain(conn, table):
    cur = conn.cursor()
    cur.execute(f"SELECT id, name FROM {table} ORDER BY id")
    rows = [tuple(r) for r in cur.fetchall()]
    cur.close()
    if not rows:
        raise Mismatch(f"{table} has no rows: the test must insert some")
    return rows


def check_prepared(driver, conn, table, rows, verify):
    before = stmt_prepare_count(conn) if verify else None
    if driver == "mysql-connector":
        # COM_STMT_PREPARE once per statement text, COM_STMT_EXECUTE per run.
        cur = conn.cursor(prepared=True)
    else:
        cur = conn.cursor()
    by_id = f"SELECT id, name FROM {table} WHERE id = %s"
    for want in rows[:2]:
        cur.execute(by_id, (want[0],))
        expect(f"prepared by id {want[0]}", [tuple(r) for r in cur.fetchall()], [want])
    cur.execute(f"SELECT id FROM {table} WHERE name = %s ORDER BY id LIMIT 1", (rows[0][1],))
    expect("prepared by name", tuple(cur.fetchone()), (rows[0][0],))
    cur.close()
    if verify:
        prepared = stmt_prepare_count(conn) - before
        if prepared < 2:
            raise Mismatch(f"Com_stmt_prepare went up by {prepared}, want at least 2 (server-side prepare)")
        print(f"{driver}: {prepared} statements prepared on the server", file=sys.stderr)


def check_transactions(driver, conn, table, rows):
    for end in ("commit", "rollback"):
        if driver == "mysql-connector":
            conn.start_transaction()  # START TRANSACTION
        else:
            conn.begin()  # BEGIN
        cur = conn.cursor()
        cur.execute(f"SELECT count(*) FROM {table}")
        expect(f"count inside a transaction ended by {end}", cur.fetchone()[0], len(rows))
        cur.close()
        getattr(conn, end)()
    cur = conn.cursor()
    cur.execute("SELECT @@in_transaction")
    expect("@@in_transaction after the transactions", cur.fetchone()[0], 0)
    cur.close()


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in DRIVERS:
        print(f"usage: {sys.argv[0]} {'|'.join(DRIVERS)}", file=sys.stderr)
        return 2
    driver = sys.argv[1]
    try:
        s = settings()
    except (KeyError, ValueError) as e:
        print(f"{driver}: bad or missing setting: {e}", file=sys.stderr)
        return 2
    if s["auth"] not in ("cleartext", "native"):
        print(f"{driver}: AUTH must be cleartext or native, not {s['auth']!r}", file=sys.stderr)
        return 2
    if driver == "pymysql" and s["verify_prepare"]:
        print("pymysql: has no server-side prepared statements; VERIFY_PREPARE is ignored", file=sys.stderr)
        s["verify_prepare"] = False
    try:
        conn = connect_pymysql(s) if driver == "pymysql" else connect_connector(s)
        try:
            rows = check_plain(conn, s["table"])
            check_prepared(driver, conn, s["table"], rows, s["verify_prepare"])
            check_transactions(driver, conn, s["table"], rows)
        finally:
            conn.close()
    except Exception as e:  # noqa: BLE001 - any failure is the check's answer
        print(f"{driver} ERROR: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"ok {driver}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
