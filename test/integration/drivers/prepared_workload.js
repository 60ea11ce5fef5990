// Prepared-statement workload for node-postgres (pg 8.x) through the pooler (test_drivers.py).
//
// usage: node prepared_workload.js host port db user password clients iterations [errors]
//
// `clients` concurrent pg.Client connections each run `iterations` rounds of named queries
// ({name, text, values}: node-postgres sends Parse with that statement name once per
// connection, then only Bind/Execute):
//   add:   SELECT $1::int + $2::int
//   count: SELECT count(*) FROM pg_class WHERE oid < $1::int::oid
//   mul:   SELECT $1::int * F  -- client C   (F = C + 2: a text of this client's own, so
//          with a small max_prepared_statements the pooler must evict and re-prepare)
//   BEGIN; add and count again with other values; COMMIT
// With `errors`, each round also runs
//   bad:   SELEC 1  (a named query whose Parse fails: node-pg sends Parse again next time,
//          which PostgreSQL accepts since no statement was created) -> 42601 each time
//   BEGIN; div: SELECT 100 / $1::int with 0 -> 22012; ROLLBACK; div again with 4 -> 25
//          (the statement was created before the error, so it survives the rollback)
// Every result is checked. Exit 0 and print
//   "node-pg ok clients=N iterations=M checks=K"
// only if all of them were right; otherwise print the failures and exit 1.
'use strict';

function loadPg() {
  try {
    return require('pg');
  } catch (e) {
    // Debian's node modules (node-pg and its dependencies) live outside node's default
    // search path; install-deps.sh unpacks node-pg into a private directory when the
    // package itself cannot be installed. Put both on the module path, as NODE_PATH would.
    const Module = require('module');
    const extra = ['/usr/share/nodejs', '/usr/local/share/pgvigil-test/nodejs'];
    process.env.NODE_PATH = [process.env.NODE_PATH, ...extra].filter(Boolean).join(':');
    Module._initPaths();
    return require('pg');
  }
}

const pg = loadPg();

const [host, port, database, user, password, clientsArg, itersArg, mode] = process.argv.slice(2);
if (itersArg === undefined) {
  console.error('usage: node prepared_workload.js host port db user password clients iterations');
  process.exit(2);
}
const clients = parseInt(clientsArg, 10);
const iterations = parseInt(itersArg, 10);
const withErrors = mode === 'errors';
const perIteration = withErrors ? 8 : 5;
const config = {
  host, port: parseInt(port, 10), database, user, password,
  connectionTimeoutMillis: 10000, statement_timeout: 0, application_name: 'pgvigil-node-workload',
};
const thresholds = [1000, 2000, 3000, 16384];
const ADD = 'SELECT $1::int + $2::int AS v';
const COUNT = 'SELECT count(*)::int AS v FROM pg_class WHERE oid < $1::int::oid';

const failures = [];
let checks = 0;

function check(client, iter, what, got, want) {
  checks++;
  if (got !== want && failures.length < 50) {
    failures.push(`client ${client} iter ${iter}: ${what} = ${got}, want ${want}`);
  }
}

function single(res) {
  if (res.rows.length !== 1) throw new Error(`expected one row, got ${res.rows.length}`);
  return res.rows[0].v;
}

async function errorCode(promise) {
  try {
    await promise;
    return 'no error';
  } catch (e) {
    return e.code || String(e);
  }
}

async function worker(client, expected) {
  const c = new pg.Client(config);
  c.on('error', (e) => failures.push(`client ${client}: connection error ${e}`));
  await c.connect();
  try {
    const add = (a, b) => c.query({ name: 'add', text: ADD, values: [a, b] });
    const count = (k) => c.query({ name: 'count', text: COUNT, values: [thresholds[k]] });
    const f = client + 2;
    const MUL = `SELECT $1::int * ${f} AS v -- client ${client}`;
    for (let i = 0; i < iterations; i++) {
      const a = client * 1000 + i;
      const b = i * 7 + 3;
      check(client, i, 'add', single(await add(a, b)), a + b);
      const k = (client + i) % thresholds.length;
      check(client, i, `count(oid<${thresholds[k]})`, single(await count(k)), expected[k]);
      check(client, i, 'mul', single(await c.query({ name: 'mul', text: MUL, values: [i] })), i * f);

      await c.query('BEGIN');
      check(client, i, 'tx add', single(await add(-a, 2 * b)), -a + 2 * b);
      const k2 = (k + 1) % thresholds.length;
      check(client, i, `tx count(oid<${thresholds[k2]})`, single(await count(k2)), expected[k2]);
      await c.query('COMMIT');

      if (withErrors) {
        check(client, i, 'bad parse', await errorCode(c.query({ name: 'bad', text: 'SELEC 1' })), '42601');
        await c.query('BEGIN');
        const div = (d) => c.query({ name: 'div', text: 'SELECT 100 / $1::int AS v', values: [d] });
        check(client, i, 'div by 0', await errorCode(div(0)), '22012');
        await c.query('ROLLBACK');
        check(client, i, 'div', single(await div(4)), 25);
      }
    }
  } finally {
    await c.end();
  }
}

async function main() {
  // Expected answers, read once through the pooler with simple queries. Only initdb's
  // objects have oids below 16384, so they cannot change during the run.
  const expected = [];
  const c = new pg.Client(config);
  await c.connect();
  for (const t of thresholds) {
    const r = await c.query(`SELECT count(*)::int AS v FROM pg_class WHERE oid < ${t}::int::oid`);
    expected.push(r.rows[0].v);
  }
  await c.end();

  const results = await Promise.allSettled(
    Array.from({ length: clients }, (_, i) => worker(i, expected)));
  results.forEach((r, i) => {
    if (r.status === 'rejected') failures.push(`client ${i}: ${r.reason && r.reason.stack || r.reason}`);
  });
  const want = perIteration * clients * iterations;
  if (failures.length === 0 && checks !== want) failures.push(`checks=${checks}, want ${want}`);
  if (failures.length) {
    for (const f of failures) console.log('FAIL ' + f);
    console.log(`node-pg FAILED failures=${failures.length} checks=${checks}`);
    process.exit(1);
  }
  console.log(`node-pg ok clients=${clients} iterations=${iterations} checks=${checks}`);
  process.exit(0);
}

main().catch((e) => {
  console.log('FAIL ' + (e && e.stack || e));
  console.log('node-pg FAILED');
  process.exit(1);
});
