#!/usr/bin/env bash
# Drive a MySQL endpoint (idgate's MySQL front end, or MariaDB itself) with the
# `mariadb` command-line client (MariaDB Connector/C underneath).
#
# Usage: tests/drivers/mariadb_cli_check.sh
#
# Settings from the environment, as for every check in tests/drivers/ (see
# mysql_check.py): HOST, PORT, USER, PASSWORD (the token), DATABASE, TABLE,
# AUTH (cleartext | native), CA_FILE.
#
# Runs a plain SELECT, an SQL-level prepared statement (PREPARE … FROM
# 'literal' / EXECUTE … USING: the client has no binary-protocol prepare), and
# two transactions, one committed and one rolled back. Prints the single line
# `ok mariadb-cli` and exits 0; on failure prints the error to stderr and
# exits 1 (2 for a usage error).
set -euo pipefail

HOST=${HOST:-127.0.0.1}
PORT=${PORT:-3306}
DATABASE=${DATABASE:-idgate_test}
TABLE=${TABLE:-idgate_test.items}
AUTH=${AUTH:-cleartext}
: "${USER:?USER is not set}" "${PASSWORD?PASSWORD is not set}"
case $AUTH in
  cleartext | native) ;;
  *) echo "mariadb-cli: AUTH must be cleartext or native, not $AUTH" >&2; exit 2 ;;
esac

# --protocol=TCP: `-h localhost` would otherwise mean the Unix socket.
args=(--no-defaults --protocol=TCP -h "$HOST" -P "$PORT" -u "$USER" -D "$DATABASE" --batch --skip-column-names --connect-timeout=10)
# AUTH needs no option here: MariaDB's client answers a switch to
# mysql_clear_password by itself, with or without TLS; it accepts
# --enable-cleartext-plugin only for MySQL compatibility (and warns that it is
# obsolete). Oracle's `mysql` needs --enable-cleartext-plugin or
# LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN=1.
if [ -n "${CA_FILE:-}" ]; then
  args+=(--ssl --ssl-ca="$CA_FILE" --ssl-verify-server-cert)
else
  args+=(--skip-ssl)
fi

fail() { echo "mariadb-cli ERROR: $*" >&2; exit 1; }

# sql TEXT: run TEXT in one session, print its tab-separated rows.
sql() {
  local out err
  err=$(mktemp)
  # MYSQL_PWD keeps the token out of the process list.
  if ! out=$(MYSQL_PWD=$PASSWORD mariadb "${args[@]}" -e "$1" 2>"$err"); then
    out=$(cat "$err")
    rm -f "$err"
    fail "$out"
  fi
  rm -f "$err"
  printf '%s\n' "$out"
}

rows=$(sql "SELECT id, name FROM $TABLE ORDER BY id")
[ -n "$rows" ] || fail "$TABLE has no rows: the test must insert some"
first_id=$(printf '%s\n' "$rows" | head -n 1 | cut -f 1)
first=$(printf '%s\n' "$rows" | head -n 1)
count=$(printf '%s\n' "$rows" | wc -l)

got=$(sql "PREPARE by_id FROM 'SELECT id, name FROM $TABLE WHERE id = ?'; EXECUTE by_id USING $first_id; DEALLOCATE PREPARE by_id")
[ "$got" = "$first" ] || fail "prepared by id $first_id: got '$got', want '$first'"

got=$(sql "START TRANSACTION; SELECT count(*) FROM $TABLE; COMMIT; START TRANSACTION; SELECT count(*) FROM $TABLE; ROLLBACK; SELECT @@in_transaction")
want=$(printf '%s\n%s\n0' "$count" "$count")
[ "$got" = "$want" ] || fail "transactions: got '$got', want '$want'"

echo "ok mariadb-cli"
