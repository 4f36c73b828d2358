#!/usr/bin/env node
// Runs the reference CQL engine (cql-execution + cql-exec-fhir) on the measure extracted into
// elm/, valuesets/ and measure.json (CMS156, see README.md) over a population of patients, and
// prints how many patients fall in each population, with the speed and the peak memory.
//
// Usage:
//   node run.js DIR [--period YEAR | --start DATETIME --end DATETIME] [--batch N]
//                   [--partitions K] [--per-patient FILE.csv] [--json FILE]
//   node run.js --validate [TESTS_DIR]
//
// DIR holds per-patient FHIR Bundles (*.json) or FHIR Bulk NDJSON (*.ndjson, *.ndjson.gz),
// or both; it is read recursively. --validate runs the measure's published test cases (tests/)
// with the measurement period of each expected MeasureReport and compares the counts.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const zlib = require('zlib');
const cql = require('cql-execution');
const cqlfhir = require('cql-exec-fhir');

const HERE = __dirname;
const USAGE =
  'usage: node run.js DIR [--period YEAR | --start DATETIME --end DATETIME] [--batch N] ' +
  '[--partitions K] [--per-patient FILE.csv] [--json FILE]\n       node run.js --validate [TESTS_DIR]';

// --- the measure -------------------------------------------------------------------------

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read ${file}: ${e.message}`);
  }
}

function loadMeasure() {
  const elmDir = path.join(HERE, 'elm');
  const libs = {};
  for (const f of fs.readdirSync(elmDir).filter((f) => f.endsWith('.json'))) {
    libs[f.replace(/\.json$/, '')] = readJson(path.join(elmDir, f));
  }
  const measure = readJson(path.join(HERE, 'measure.json'));
  const mainName = measure.library[0].split('/').pop();
  const main = libs[mainName];
  if (!main) throw new Error(`measure.json names library ${mainName}, elm/ has no ${mainName}.json`);
  const library = new cql.Repository(libs).resolve(mainName, main.library.identifier.version);

  // CodeService wants {url: {version: [{code, system, version}]}}. The ELM declares value sets
  // by url without a version, so the one expansion of each is used.
  const vsDir = path.join(HERE, 'valuesets');
  const valueSets = {};
  for (const f of fs.readdirSync(vsDir).filter((f) => f.endsWith('.json'))) {
    const vs = readJson(path.join(vsDir, f));
    const codes = vs.expansion.contains.map((c) => ({ code: c.code, system: c.system, version: c.version }));
    valueSets[vs.url] = { [vs.version || '']: codes };
  }

  // Each group of the Measure is one rate: its populations name CQL expressions.
  const groups = measure.group.map((g) => {
    const pop = {};
    for (const p of g.population) pop[p.code.coding[0].code] = p.criteria.expression;
    return pop;
  });
  return {
    library,
    codeService: new cql.CodeService(valueSets),
    groups,
    name: measure.title || measure.name,
    version: measure.version,
    retrievedTypes: retrievedTypes(Object.values(libs)),
  };
}

// The FHIR resource types any ELM Retrieve asks for: only those are kept from NDJSON input.
function retrievedTypes(libs) {
  const types = new Set(['Patient']);
  const walk = (node) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === 'object') {
      if (node.type === 'Retrieve' && typeof node.dataType === 'string') {
        types.add(node.dataType.replace(/^\{[^}]*\}/, ''));
      }
      for (const v of Object.values(node)) if (typeof v === 'object') walk(v);
    }
  };
  libs.forEach((l) => walk(l.library.statements));
  return types;
}

function measurementPeriod(start, end) {
  const low = cql.DateTime.parse(start);
  const high = cql.DateTime.parse(end);
  if (!low || !high) throw new Error(`bad measurement period ${start} .. ${end}`);
  return new cql.Interval(low, high, true, true);
}

// --- populations -------------------------------------------------------------------------

// Proportion-measure membership of one patient from the raw expression results: the
// denominator is within the initial population, exclusions only count inside the
// denominator, and a numerator only counts for a denominator patient not excluded.
function memberships(groups, res) {
  const truthy = (expr) => expr !== undefined && isTrue(res[expr]);
  return groups.map((g) => {
    const ip = truthy(g['initial-population']);
    const den = ip && truthy(g['denominator']);
    const denex = den && truthy(g['denominator-exclusion']);
    const num = den && !denex && truthy(g['numerator']);
    return { 'initial-population': ip, denominator: den, 'denominator-exclusion': denex, numerator: num };
  });
}

function isTrue(v) {
  if (Array.isArray(v)) return v.length > 0;
  return v === true;
}

// Population labels as printed: one line per distinct expression, in group order.
function populationRows(groups) {
  const rows = [];
  const seen = new Set();
  groups.forEach((g, gi) => {
    for (const code of ['initial-population', 'denominator', 'denominator-exclusion', 'numerator']) {
      const expr = g[code];
      if (expr === undefined || seen.has(expr)) continue;
      seen.add(expr);
      rows.push({ code, expr, group: gi });
    }
  });
  return rows;
}

class Tally {
  constructor(groups) {
    this.rows = populationRows(groups);
    this.counts = this.rows.map(() => 0);
    this.patients = 0;
    this.errors = 0;
  }

  add(member) {
    this.patients++;
    this.rows.forEach((r, i) => {
      if (member[r.group][r.code]) this.counts[i]++;
    });
  }
}

// --- input -------------------------------------------------------------------------------

function listInputs(dir) {
  const out = { bundles: [], ndjson: [] };
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ndjson(\.gz)?$/.test(e.name)) out.ndjson.push(p);
      else if (e.name.endsWith('.json') && !/^(MANIFEST|package(-lock)?)\.json$/.test(e.name)) out.bundles.push(p);
    }
  };
  walk(dir);
  out.bundles.sort();
  out.ndjson.sort();
  return out;
}

// The patient a resource belongs to, from its own id (Patient) or its patient reference.
function patientOf(r) {
  if (r.resourceType === 'Patient') return r.id;
  const ref = (r.subject && r.subject.reference) || (r.patient && r.patient.reference) ||
    (r.beneficiary && r.beneficiary.reference);
  if (typeof ref !== 'string') return undefined;
  if (ref.startsWith('urn:uuid:')) return ref.slice(9);
  const m = /(?:^|\/)Patient\/([^/]+)$/.exec(ref);
  return m ? m[1] : undefined;
}

// FNV-1a, to split patients into --partitions groups that are read in separate passes.
function partitionOf(id, k) {
  if (k === 1) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193) >>> 0;
  return h % k;
}

// Streams the lines of one NDJSON file (gzip when it ends in .gz), counting decompressed bytes.
async function* ndjsonLines(file, stats) {
  let stream = fs.createReadStream(file, { highWaterMark: 1 << 20 });
  if (file.endsWith('.gz')) stream = stream.pipe(zlib.createGunzip());
  stream.on('data', (chunk) => (stats.bytes += chunk.length));
  const rl = readline.createInterface({ input: stream, crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) {
    n++;
    if (line.trim() === '') continue;
    try {
      yield JSON.parse(line);
    } catch (e) {
      throw new Error(`${file} line ${n}: ${e.message}`);
    }
  }
}

// One pass over all NDJSON files, keeping the retrieved resources of the patients in
// partition `part`. Retrieved resources without a patient (Medication, Location) are kept by
// id and joined to each patient whose resources reference them.
async function readNdjsonPartition(files, types, part, k, stats) {
  const byPatient = new Map();
  const shared = new Map();
  for (const file of files) {
    for await (const r of ndjsonLines(file, stats)) {
      stats.lines++;
      if (!types.has(r.resourceType)) continue;
      const pid = patientOf(r);
      if (pid === undefined) {
        shared.set(`${r.resourceType}/${r.id}`, r);
        shared.set(`urn:uuid:${r.id}`, r);
        continue;
      }
      if (partitionOf(pid, k) !== part) continue;
      let list = byPatient.get(pid);
      if (!list) byPatient.set(pid, (list = []));
      list.push(r);
    }
  }
  const bundles = [];
  for (const [pid, list] of byPatient) {
    if (!list.some((r) => r.resourceType === 'Patient')) {
      stats.orphans += list.length;
      continue;
    }
    const joined = new Set();
    if (shared.size > 0) list.forEach((r) => references(r, shared, joined));
    const entries = list.concat([...joined]).map((resource) => ({ resource }));
    bundles.push({ id: pid, bundle: { resourceType: 'Bundle', type: 'collection', entry: entries } });
  }
  return bundles;
}

// Adds to `found` every resource of `shared` that `node` references (Type/ID, a full URL
// ending in Type/ID, or urn:uuid:ID).
function references(node, shared, found) {
  if (Array.isArray(node)) node.forEach((n) => references(n, shared, found));
  else if (node && typeof node === 'object') {
    for (const [key, v] of Object.entries(node)) {
      if (key === 'reference' && typeof v === 'string') {
        const hit = shared.get(v) || shared.get(v.replace(/^.*\/([^/]+\/[^/]+)$/, '$1'));
        if (hit) found.add(hit);
      } else if (typeof v === 'object') references(v, shared, found);
    }
  }
}

// --- evaluation --------------------------------------------------------------------------

async function evaluate(m, bundles, period, onPatient) {
  const executor = new cql.Executor(m.library, m.codeService, { 'Measurement Period': period });
  const source = cqlfhir.PatientSource.FHIRv401();
  source.loadBundles(bundles);
  const results = await executor.exec(source);
  for (const [pid, res] of Object.entries(results.patientResults)) onPatient(pid, res);
}

async function runPopulation(dir, opts) {
  const m = loadMeasure();
  const period = measurementPeriod(opts.start, opts.end);
  const inputs = listInputs(dir);
  if (inputs.bundles.length + inputs.ndjson.length === 0) throw new Error(`${dir} has no *.json, *.ndjson or *.ndjson.gz`);
  const tally = new Tally(m.groups);
  const stats = { bytes: 0, lines: 0, orphans: 0 };
  const perPatient = opts.perPatient ? fs.createWriteStream(opts.perPatient) : null;
  if (perPatient) perPatient.write(['patient', ...tally.rows.map((r) => r.expr)].join(',') + '\n');
  const onPatient = (pid, res) => {
    const member = memberships(m.groups, res);
    tally.add(member);
    if (perPatient) perPatient.write([pid, ...tally.rows.map((r) => (member[r.group][r.code] ? 1 : 0))].join(',') + '\n');
  };

  const t0 = process.hrtime.bigint();
  for (let i = 0; i < inputs.bundles.length; i += opts.batch) {
    const batch = inputs.bundles.slice(i, i + opts.batch).map((f) => {
      const text = fs.readFileSync(f, 'utf8');
      stats.bytes += Buffer.byteLength(text);
      const b = JSON.parse(text);
      if (b.resourceType !== 'Bundle') throw new Error(`${f} is a ${b.resourceType}, not a Bundle`);
      return b;
    });
    await evaluate(m, batch, period, onPatient);
  }
  for (let part = 0; part < opts.partitions && inputs.ndjson.length > 0; part++) {
    const bundles = await readNdjsonPartition(inputs.ndjson, m.retrievedTypes, part, opts.partitions, stats);
    for (let i = 0; i < bundles.length; i += opts.batch) {
      await evaluate(m, bundles.slice(i, i + opts.batch).map((b) => b.bundle), period, onPatient);
    }
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (perPatient) await new Promise((ok) => perPatient.end(ok));

  const summary = {
    measure: `${m.name} ${m.version}`,
    engine: `cql-execution ${require('cql-execution/package.json').version}, cql-exec-fhir ${require('cql-exec-fhir/package.json').version}`,
    input: path.resolve(dir),
    measurementPeriod: `${opts.start} .. ${opts.end}`,
    populations: Object.fromEntries(tally.rows.map((r, i) => [r.expr, tally.counts[i]])),
    patients: tally.patients,
    bundleFiles: inputs.bundles.length,
    ndjsonFiles: inputs.ndjson.length,
    ndjsonLines: stats.lines,
    resourcesOfMissingPatients: stats.orphans,
    bytes: stats.bytes,
    seconds: round(seconds, 3),
    patientsPerSecond: round(tally.patients / seconds, 1),
    mbPerSecond: round(stats.bytes / 1e6 / seconds, 2),
    peakRssMb: round(process.resourceUsage().maxRSS / 1024, 1),
  };
  printSummary(summary);
  if (opts.json) fs.writeFileSync(opts.json, JSON.stringify(summary, null, 2) + '\n');
}

function round(x, d) {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

function printSummary(s) {
  console.log(`measure             ${s.measure}`);
  console.log(`engine              ${s.engine}`);
  console.log(`input               ${s.input} (${s.bundleFiles} bundle files, ${s.ndjsonFiles} NDJSON files)`);
  console.log(`measurement period  ${s.measurementPeriod}`);
  for (const [expr, n] of Object.entries(s.populations)) console.log(`  ${expr.padEnd(24)} ${String(n).padStart(8)}`);
  console.log(`patients            ${s.patients}`);
  if (s.resourcesOfMissingPatients > 0) {
    console.log(`skipped             ${s.resourcesOfMissingPatients} resources of patients with no Patient resource`);
  }
  console.log(`bytes               ${s.bytes} (${(s.bytes / 1e6).toFixed(1)} MB)`);
  console.log(`elapsed             ${s.seconds} s`);
  console.log(`speed               ${s.patientsPerSecond} patients/s, ${s.mbPerSecond} MB/s`);
  console.log(`peak RSS            ${s.peakRssMb} MB`);
}

// --- the published test cases ------------------------------------------------------------

// Expected counts of a test MeasureReport, per group, keyed by population code.
function expectedCounts(report) {
  return report.group.map((g) => Object.fromEntries(g.population.map((p) => [p.code.coding[0].code, p.count])));
}

async function validate(dir) {
  const m = loadMeasure();
  const names = {};
  const readme = path.join(dir, 'README.txt');
  if (fs.existsSync(readme)) {
    for (const line of fs.readFileSync(readme, 'utf8').split('\n')) {
      const mm = /^([0-9a-f-]{36}) = (.*)$/.exec(line.trim());
      if (mm) names[mm[1]] = mm[2];
    }
  }
  let pass = 0;
  const failures = [];
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  for (const f of files) {
    const bundle = readJson(path.join(dir, f));
    const report = bundle.entry.map((e) => e.resource).find((r) => r.resourceType === 'MeasureReport');
    if (!report) throw new Error(`${f} has no expected MeasureReport`);
    const data = { ...bundle, entry: bundle.entry.filter((e) => e.resource.resourceType !== 'MeasureReport') };
    const period = measurementPeriod(`${report.period.start}T00:00:00.000Z`, `${report.period.end}T23:59:59.999Z`);
    let got = null;
    await evaluate(m, [data], period, (pid, res) => (got = memberships(m.groups, res)));
    const want = expectedCounts(report);
    const diffs = [];
    want.forEach((g, gi) => {
      for (const [code, n] of Object.entries(g)) {
        const have = got && got[gi] && got[gi][code] ? 1 : 0;
        if (have !== n) diffs.push(`group ${gi + 1} ${code}: expected ${n}, got ${have}`);
      }
    });
    const id = f.replace(/\.json$/, '');
    if (diffs.length === 0) pass++;
    else failures.push(`${id} (${names[id] || '?'}): ${diffs.join('; ')}`);
  }
  failures.forEach((x) => console.log(`MISMATCH ${x}`));
  console.log(`${pass} of ${files.length} test cases match their expected MeasureReport`);
  console.log(`${pass} passed, ${failures.length} failed`);
  return failures.length === 0;
}

// --- command line ------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = { batch: 50, partitions: 1, start: null, end: null, period: '2024' };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value\n${USAGE}`);
      return argv[++i];
    };
    if (a === '--period') opts.period = val();
    else if (a === '--start') opts.start = val();
    else if (a === '--end') opts.end = val();
    else if (a === '--batch') opts.batch = positive(a, val());
    else if (a === '--partitions') opts.partitions = positive(a, val());
    else if (a === '--per-patient') opts.perPatient = val();
    else if (a === '--json') opts.json = val();
    else if (a === '--validate') opts.validate = true;
    else if (a === '-h' || a === '--help') {
      console.log(USAGE);
      process.exit(0);
    } else if (a.startsWith('-')) throw new Error(`unknown option ${a}\n${USAGE}`);
    else rest.push(a);
  }
  if (!/^\d{4}$/.test(opts.period)) throw new Error(`--period wants a year, got ${opts.period}`);
  opts.start = opts.start || `${opts.period}-01-01T00:00:00.000Z`;
  opts.end = opts.end || `${opts.period}-12-31T23:59:59.999Z`;
  opts.dir = rest[0];
  if (!opts.validate && !opts.dir) throw new Error(USAGE);
  return opts;
}

function positive(name, v) {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} wants a positive integer, got ${v}`);
  return n;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.validate) {
    process.exitCode = (await validate(opts.dir || path.join(HERE, 'tests'))) ? 0 : 1;
  } else {
    await runPopulation(opts.dir, opts);
  }
}

main().catch((e) => {
  console.error(`run.js: ${e.message}`);
  process.exit(2);
});
