#!/usr/bin/env node
// Copies one measure's published content out of a git checkout (bare or not) of the
// QI-Core 2024 eCQM content repository (cqframework/ecqm-content-qicore-2024):
//   elm/<Library>.json      the ELM JSON of the measure library and of every library it includes
//   valuesets/<oid>.json    the expanded FHIR ValueSet of every value set those libraries declare
//   measure.json            the Measure resource (its groups name the population expressions)
//   tests/<uuid>.json       the measure's published test cases (a Bundle per patient, with the
//                           expected MeasureReport), and tests/README.txt naming them
//   SOURCE.json             the repository commit and the paths everything came from
//
// Usage: node extract.js [--git-dir DIR] [--library NAME]
// Only git is needed; the output is committed, so run.js never needs the content repository.
'use strict';

const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const DEFAULT_GIT_DIR = '/work/.mirror/cqframework+ecqm-content-qicore-2024/repo';
const DEFAULT_LIBRARY = 'UseofHighRiskMedicationsintheElderlyFHIR';
const HERE = __dirname;

function parseArgs(argv) {
  const opts = { gitDir: DEFAULT_GIT_DIR, library: DEFAULT_LIBRARY };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--git-dir') opts.gitDir = argv[++i];
    else if (a === '--library') opts.library = argv[++i];
    else throw new Error(`unknown argument ${a} (usage: node extract.js [--git-dir DIR] [--library NAME])`);
  }
  return opts;
}

function git(gitDir, args) {
  return execFileSync('git', ['--git-dir', gitDir, ...args], { maxBuffer: 1 << 30 });
}

function show(gitDir, file) {
  try {
    return git(gitDir, ['show', `HEAD:${file}`]).toString('utf8');
  } catch (e) {
    throw new Error(`cannot read ${file} from ${gitDir}: ${e.message}`);
  }
}

// The ELM JSON inside a FHIR Library resource (base64 content of type application/elm+json).
function elmOf(libraryResource, file) {
  const content = (libraryResource.content || []).find((c) => c.contentType === 'application/elm+json');
  if (!content || !content.data) throw new Error(`${file} has no application/elm+json content`);
  return JSON.parse(Buffer.from(content.data, 'base64').toString('utf8'));
}

// Reads the library NAME and, depth first, every library it includes.
function collectLibraries(gitDir, name, found) {
  if (found.has(name)) return;
  const file = `input/resources/library/${name}.json`;
  const elm = elmOf(JSON.parse(show(gitDir, file)), file);
  found.set(name, { file, elm });
  for (const inc of (elm.library.includes && elm.library.includes.def) || []) {
    const incName = inc.path.split('/').pop();
    collectLibraries(gitDir, incName, found);
    const got = found.get(incName).elm.library.identifier.version;
    if (inc.version && got !== inc.version) {
      throw new Error(`${name} includes ${incName} version ${inc.version}, the repository has ${got}`);
    }
  }
}

function writeJson(file, value) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value, null, 1) + '\n');
}

function resetDir(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const { gitDir, library } = opts;
  const commit = git(gitDir, ['rev-parse', 'HEAD']).toString().trim();
  const tree = git(gitDir, ['ls-tree', '-r', '--name-only', 'HEAD']).toString().split('\n');

  const libs = new Map();
  collectLibraries(gitDir, library, libs);
  resetDir(path.join(HERE, 'elm'));
  for (const [name, { elm }] of libs) writeJson(path.join(HERE, 'elm', `${name}.json`), elm);

  // Value sets are files named valueset-<oid>.json or ValueSet-<oid>.json.
  const vsFiles = new Map();
  for (const f of tree) {
    const m = /^input\/vocabulary\/valueset\/.*\/valueset-(.+)\.json$/i.exec(f);
    if (m) vsFiles.set(m[1], f);
  }
  const vsUrls = new Set();
  for (const { elm } of libs.values()) {
    for (const vs of (elm.library.valueSets && elm.library.valueSets.def) || []) vsUrls.add(vs.id);
  }
  resetDir(path.join(HERE, 'valuesets'));
  const valueSetSources = {};
  for (const url of [...vsUrls].sort()) {
    const oid = url.split('/').pop();
    const file = vsFiles.get(oid);
    if (!file) throw new Error(`value set ${url} is declared but ${gitDir} has no valueset-${oid}.json`);
    const vs = JSON.parse(show(gitDir, file));
    if (vs.url !== url) throw new Error(`${file} has url ${vs.url}, expected ${url}`);
    if (!vs.expansion || !vs.expansion.contains) throw new Error(`${file} has no expansion`);
    writeJson(path.join(HERE, 'valuesets', `${oid}.json`), vs);
    valueSetSources[url] = file;
  }

  const measureFile = `input/resources/measure/${library}.json`;
  writeJson(path.join(HERE, 'measure.json'), JSON.parse(show(gitDir, measureFile)));

  // Test cases: one transaction Bundle per patient, each with its expected MeasureReport.
  const testsDir = `bundles/measure/${library}/${library}-files`;
  resetDir(path.join(HERE, 'tests'));
  let tests = 0;
  for (const f of tree) {
    const m = new RegExp(`^${testsDir}/tests-(.+)-bundle\\.json$`).exec(f);
    if (!m) continue;
    writeJson(path.join(HERE, 'tests', `${m[1]}.json`), JSON.parse(show(gitDir, f)));
    tests++;
  }
  if (tree.includes(`${testsDir}/README.txt`)) {
    fs.writeFileSync(path.join(HERE, 'tests', 'README.txt'), show(gitDir, `${testsDir}/README.txt`));
  }

  writeJson(path.join(HERE, 'SOURCE.json'), {
    repository: 'https://github.com/cqframework/ecqm-content-qicore-2024',
    licence: 'CC0-1.0 (LICENSE of that repository)',
    commit,
    measure: measureFile,
    libraries: Object.fromEntries([...libs].map(([n, { file, elm }]) => [n, { file, version: elm.library.identifier.version }])),
    valueSets: valueSetSources,
    tests: `${testsDir}/tests-*-bundle.json`,
  });
  console.log(`commit ${commit}: ${libs.size} libraries, ${vsUrls.size} value sets, ${tests} test cases`);
}

main();
