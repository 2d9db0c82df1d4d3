#!/usr/bin/env bash
# Prove the MySQL driver checks in tests/drivers/ against MariaDB on
# 127.0.0.1:3306, before idgate's MySQL front end exists:
#
#   direct     each check as idgate_native with AUTH=native, VERIFY_PREPARE=1
#   cleartext  through cleartext_proxy.py (switches to mysql_clear_password),
#              plaintext loopback
#   tls        the same through TLS, the certificate (for localhost, from a
#              throwaway CA) verified against CA_FILE
#   wrong-name TLS with a certificate from that CA for another name: every
#              client must refuse it before it sends the password
#
# Two refusals are expected and checked: mysql-connector-python refuses
# mysql_clear_password without TLS, and, told it talks to MySQL 8.0 (as the
# proxy and idgate say), sets collation utf8mb4_0900_ai_ci, which MariaDB
# 10.11 does not have; it is run again with COLLATION=utf8mb4_general_ci.
# Needs scripts/setup to have run. Creates idgate_test.drivers_smoke_items
# (as MariaDB root) and drops it on exit. One line per run; exit 1 if any
# run did not go as expected.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${IDGATE_PYTHON:-.venv/bin/python}
JAR=/usr/share/java/mariadb-java-client.jar
export USER=idgate_native PASSWORD=native-secret DATABASE=idgate_test TABLE=idgate_test.drivers_smoke_items
root_sql() { mariadb --no-defaults --skip-ssl -h 127.0.0.1 -P 3306 -u root -e "$1"; }

work=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  root_sql "DROP TABLE IF EXISTS $TABLE" || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM PIPE HUP

root_sql "DROP TABLE IF EXISTS $TABLE; CREATE TABLE $TABLE (id int, name text);
  INSERT INTO $TABLE VALUES (1, 'one'), (2, 'two é'), (3, 'three')"

# A throwaway CA, a certificate for localhost (as idgate's dev certificate is)
# and one for another name, which verification must refuse.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=smoke-ca \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
for name in localhost elsewhere.invalid; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$work/$name.key" -out "$work/$name.csr" 2>/dev/null
  openssl x509 -req -in "$work/$name.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 1 \
    -extfile <(printf 'subjectAltName=DNS:%s\n' "$name") -out "$work/$name.pem" 2>/dev/null
done

# start_proxy NAME [CERT KEY]: start cleartext_proxy.py, set PROXY_PORT.
start_proxy() {
  local name=$1
  shift
  : >"$work/$name.out"  # there before the proxy's own redirection creates it
  "$PY" tests/drivers/cleartext_proxy.py 127.0.0.1:3306 "$@" >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  local i
  for i in $(seq 1 50); do
    PROXY_PORT=$(sed -n 's/^listening //p' "$work/$name.out")
    [ -n "$PROXY_PORT" ] && return 0
    sleep 0.1
  done
  echo "cleartext_proxy $name did not start" >&2
  cat "$work/$name.log" >&2
  return 1
}
start_proxy plain
PLAIN_PORT=$PROXY_PORT
start_proxy tls "$work/localhost.pem" "$work/localhost.key"
TLS_PORT=$PROXY_PORT
start_proxy wrong "$work/elsewhere.invalid.pem" "$work/elsewhere.invalid.key"
WRONG_PORT=$PROXY_PORT

failed=0
# run MODE EXPECT CHECK...: run one check with MODE's settings; EXPECT is ok
# or a text its error must contain.
run() {
  local mode=$1 expect=$2 out rc
  shift 2
  local env=(VERIFY_PREPARE=1)
  case $mode in
    direct) env+=(HOST=127.0.0.1 PORT=3306 AUTH=native CA_FILE=) ;;
    cleartext) env+=(HOST=127.0.0.1 PORT=$PLAIN_PORT AUTH=cleartext CA_FILE=) ;;
    tls) env+=(HOST=localhost PORT=$TLS_PORT AUTH=cleartext CA_FILE=$work/ca.pem) ;;
    # A certificate from the right CA for another name: must be refused.
    wrong-name) env+=(HOST=localhost PORT=$WRONG_PORT AUTH=cleartext CA_FILE=$work/ca.pem) ;;
  esac
  set +e
  out=$(env "${env[@]}" "$@" 2>&1)
  rc=$?
  set -e
  if [ "$expect" = ok ] && [ $rc -eq 0 ]; then
    printf '%-9s %s\n' "$mode" "$(printf '%s\n' "$out" | grep '^ok ') ($(printf '%s\n' "$out" | grep -o '[0-9]* statements prepared on the server' || echo 'no server-side prepare'))"
  elif [ "$expect" != ok ] && [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -qiE "$expect"; then
    printf '%-9s refused as expected: %s\n' "$mode" "$(printf '%s\n' "$out" | grep ERROR | head -n 1)"
  else
    printf '%-9s UNEXPECTED (exit %d, want %s) from %s:\n%s\n' "$mode" $rc "$expect" "$*" "$out"
    failed=1
  fi
}

for mode in direct cleartext tls; do
  run "$mode" ok tests/drivers/mariadb_cli_check.sh
  run "$mode" ok "$PY" tests/drivers/mysql_check.py pymysql
  case $mode in
    direct) run "$mode" ok "$PY" tests/drivers/mysql_check.py mysql-connector ;;
    cleartext) run "$mode" 'Clear password authentication is not supported over insecure channels' \
      "$PY" tests/drivers/mysql_check.py mysql-connector ;;
    tls)
      run "$mode" "Unknown collation: 'utf8mb4_0900_ai_ci'" "$PY" tests/drivers/mysql_check.py mysql-connector
      run "$mode" ok env COLLATION=utf8mb4_general_ci "$PY" tests/drivers/mysql_check.py mysql-connector
      ;;
  esac
  run "$mode" ok node tests/drivers/node/mysql2_check.js
  run "$mode" ok java -cp "$JAR" tests/drivers/MariadbCheck.java
done
for check in tests/drivers/mariadb_cli_check.sh "$PY tests/drivers/mysql_check.py pymysql" \
  "$PY tests/drivers/mysql_check.py mysql-connector" "node tests/drivers/node/mysql2_check.js" \
  "java -cp $JAR tests/drivers/MariadbCheck.java"; do
  # shellcheck disable=SC2086 # the check's words
  run wrong-name 'verif|mismatch|certificate' $check
done
# The proxy saw passwords in clear, over plaintext and over TLS.
for name in plain tls; do
  n=$(grep -c 'sent its password in clear' "$work/$name.log" || true)
  echo "cleartext_proxy ($name): $n logins with the password in clear"
  [ "$n" -gt 0 ] || failed=1
done
# …and none reached the proxy with the wrong certificate.
n=$(grep -c 'sent its password in clear' "$work/wrong.log" || true)
[ "$n" = 0 ] || { echo "cleartext_proxy (wrong): $n passwords sent to a server with a certificate for another name"; failed=1; }
exit $failed
