// Drive a MySQL endpoint (idgate's MySQL front end, or MariaDB itself) with
// node mysql2.
//
// Usage: node tests/drivers/node/mysql2_check.js
//
// Settings from the environment, as for every check in tests/drivers/ (see
// mysql_check.py): HOST, PORT, USER, PASSWORD (the token), DATABASE, TABLE,
// AUTH (cleartext | native), CA_FILE, VERIFY_PREPARE=1.
//
// Runs a plain SELECT (text protocol), a server-side prepared statement with
// a parameter (`execute`: COM_STMT_PREPARE once, COM_STMT_EXECUTE per run),
// and two transactions, one committed and one rolled back. Prints the single
// line `ok mysql2` and exits 0; on failure prints the error to stderr and
// exits 1 (2 for a usage error).
'use strict';

const fs = require('node:fs');
const mysql = require('mysql2/promise');

class Mismatch extends Error {}

function expect(what, got, want) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) throw new Mismatch(`${what}: got ${g}, want ${w}`);
}

function settings() {
  const env = process.env;
  for (const name of ['USER', 'PASSWORD']) {
    if (env[name] === undefined) throw new Error(`${name} is not set`);
  }
  const auth = env.AUTH || 'cleartext';
  if (auth !== 'cleartext' && auth !== 'native') {
    throw new Error(`AUTH must be cleartext or native, not ${auth}`);
  }
  return {
    host: env.HOST || '127.0.0.1',
    port: Number(env.PORT || 3306),
    user: env.USER,
    password: env.PASSWORD,
    database: env.DATABASE || 'idgate_test',
    table: env.TABLE || 'idgate_test.items',
    auth,
    caFile: env.CA_FILE || null,
    verifyPrepare: env.VERIFY_PREPARE === '1',
  };
}

function connectOptions(s) {
  const options = {
    host: s.host,
    port: s.port,
    user: s.user,
    password: s.password,
    database: s.database,
    connectTimeout: 10000,
  };
  if (s.auth === 'cleartext') {
    // Without it mysql2 refuses an AuthSwitchRequest to mysql_clear_password
    // (MYSQL_CLEAR_PASSWORD_NOT_ENABLED); with it the password goes in clear
    // with or without TLS.
    options.enableCleartextPlugin = true;
  }
  if (s.caFile) {
    // rejectUnauthorized checks the chain; verifyIdentity (off by default in
    // mysql2) checks that the certificate is for HOST.
    options.ssl = { ca: fs.readFileSync(s.caFile), rejectUnauthorized: true, verifyIdentity: true };
  }
  return options;
}

async function stmtPrepareCount(conn) {
  const [rows] = await conn.query("SHOW SESSION STATUS LIKE 'Com_stmt_prepare'");
  return Number(rows[0].Value);
}

async function check(conn, s) {
  // Plain statement: COM_QUERY.
  const [plain] = await conn.query(`SELECT id, name FROM ${s.table} ORDER BY id`);
  const rows = plain.map((r) => [r.id, r.name]);
  if (rows.length === 0) throw new Mismatch(`${s.table} has no rows: the test must insert some`);

  // Server-side prepared statements.
  const before = s.verifyPrepare ? await stmtPrepareCount(conn) : 0;
  for (const want of rows.slice(0, 2)) {
    const [got] = await conn.execute(`SELECT id, name FROM ${s.table} WHERE id = ?`, [want[0]]);
    expect(`prepared by id ${want[0]}`, got.map((r) => [r.id, r.name]), [want]);
  }
  const [byName] = await conn.execute(`SELECT id FROM ${s.table} WHERE name = ? ORDER BY id LIMIT 1`, [rows[0][1]]);
  expect('prepared by name', byName.map((r) => r.id), [rows[0][0]]);
  if (s.verifyPrepare) {
    const prepared = (await stmtPrepareCount(conn)) - before;
    if (prepared < 2) throw new Mismatch(`Com_stmt_prepare went up by ${prepared}, want at least 2 (server-side prepare)`);
    console.error(`mysql2: ${prepared} statements prepared on the server`);
  }

  // Transactions: START TRANSACTION, then COMMIT or ROLLBACK.
  for (const end of ['commit', 'rollback']) {
    await conn.beginTransaction();
    const [count] = await conn.query(`SELECT count(*) AS n FROM ${s.table}`);
    expect(`count inside a transaction ended by ${end}`, Number(count[0].n), rows.length);
    await conn[end]();
  }
  const [state] = await conn.query('SELECT @@in_transaction AS t');
  expect('@@in_transaction after the transactions', Number(state[0].t), 0);
}

async function main() {
  let s;
  try {
    s = settings();
  } catch (e) {
    console.error(`mysql2: ${e.message}`);
    return 2;
  }
  let conn;
  try {
    conn = await mysql.createConnection(connectOptions(s));
    await check(conn, s);
    await conn.end();
  } catch (e) {
    console.error(`mysql2 ERROR: ${e.code || e.name}: ${e.message}`);
    if (conn) conn.destroy();
    return 1;
  }
  console.log('ok mysql2');
  return 0;
}

main().then((code) => {
  process.exitCode = code;
});
