// Scores a cache-tests results file the way cache-tests.fyi shows it, and writes every test
// that did not pass as a markdown table.
//
//   node summarize.mjs SUITE_DIR RESULTS_JSON FAILURES_MD [WHAT_RAN]
//
// The suite's own classification (test-engine/lib/results.mjs, dependencies honoured):
//   passed             result true, kind required or optimal (a check that holds is "yes")
//   required failures  kind required, failed an assertion, every test it depends on passed
// Set-up, harness and dependency failures are counted apart, as the suite does.
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [suiteDir, resultsFile, failuresFile, whatRan] = process.argv.slice(2)
if (!failuresFile) {
  console.error('usage: node summarize.mjs SUITE_DIR RESULTS_JSON FAILURES_MD')
  process.exit(2)
}
const load = rel => import(pathToFileURL(path.resolve(suiteDir, rel)).href)
const { default: suites } = await load('tests/index.mjs')
const { determineTestResult, resultTypes } = await load('test-engine/lib/results.mjs')
const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))

// Which file under tests/ defines each suite, read from the imports of tests/index.mjs (the
// suites carry only an id), so a reader can go straight to the definitions.
const index = fs.readFileSync(path.join(suiteDir, 'tests/index.mjs'), 'utf8')
const fileOf = Object.fromEntries([...index.matchAll(/import (\w+) from '\.\/([\w.-]+)'/g)].map(m => [m[1], m[2]]))
const order = (index.match(/export default \[([^\]]*)\]/) || ['', ''])[1].split(',').map(s => s.trim())
const suiteFile = suite => fileOf[order[suites.indexOf(suite)]] || '?'

// Classes in the order they are reported; labels for people.
const classes = {
  pass: 'passed',
  fail: 'required failure',
  optional_fail: 'optimal, not met',
  yes: 'check: yes',
  no: 'check: no',
  setup_fail: 'set-up failure',
  harness_fail: 'harness failure',
  dependency_fail: 'dependency failed',
  retry: 'retried',
  untested: 'not run'
}
const classOf = type => Object.keys(resultTypes).find(k => resultTypes[k] === type)

const counts = Object.fromEntries(Object.keys(classes).map(k => [k, 0]))
const rows = [] // every test that did not pass, in suite order
const perSuite = []
for (const suite of suites) {
  const mine = { id: suite.id, name: suite.name, pass: 0, yes: 0, fail: 0, other: 0 }
  for (const test of suite.tests) {
    // The command-line client never runs browser-only tests.
    if (test.browser_only === true) continue
    const cls = classOf(determineTestResult(suites, test.id, results))
    counts[cls]++
    if (cls === 'pass' || cls === 'yes') {
      mine[cls]++
      continue
    }
    if (cls === 'fail') mine.fail++
    else mine.other++
    const raw = results[test.id]
    let message = raw === undefined ? '' : raw === true ? '(passed itself)' : `${raw[0]}: ${raw[1]}`
    if (cls === 'dependency_fail') message = `depends on ${test.depends_on.join(', ')}; own result ${message}`
    rows.push({ suite, test, cls, message })
  }
  perSuite.push(mine)
}

// Markdown table cells: one line, no bare pipes.
const cell = s => String(s ?? '').replace(/\s+/g, ' ').replace(/\|/g, '\\|').trim()

const lines = []
lines.push('# HTTP caching test suite: tests not passed', '')
lines.push(`Results: \`${path.relative(path.dirname(failuresFile), resultsFile)}\`` +
  (whatRan ? `; ${whatRan}.` : '.'), '')
lines.push(`**${counts.pass} passed / ${counts.fail} required failures** ` +
  '(cache-tests.fyi counting: set-up, harness and dependency failures are not required failures).', '')
lines.push('| class | tests |', '|---|---|')
for (const [k, label] of Object.entries(classes)) if (counts[k]) lines.push(`| ${label} | ${counts[k]} |`)
lines.push('')
for (const suite of suites) {
  const mine = rows.filter(r => r.suite === suite)
  if (mine.length === 0) continue
  lines.push(`## ${suite.id}: ${cell(suite.name)} (tests/${suiteFile(suite)})`, '')
  lines.push('| id | kind | result | test | message |', '|---|---|---|---|---|')
  for (const { test, cls, message } of mine) {
    lines.push(`| \`${test.id}\` | ${test.kind || 'required'} | ${classes[cls]} | ${cell(test.name)} | ${cell(message)} |`)
  }
  lines.push('')
}
fs.writeFileSync(failuresFile, lines.join('\n'))

console.log('suite                  passed  check-yes  required-failures  other-not-passed')
for (const s of perSuite) {
  console.log(s.id.padEnd(22) + [[s.pass, 6], [s.yes, 11], [s.fail, 19], [s.other, 18]]
    .map(([n, w]) => String(n).padStart(w)).join(''))
}
const detail = Object.entries(classes)
  .filter(([k]) => counts[k] && k !== 'pass' && k !== 'fail')
  .map(([k, label]) => `${counts[k]} ${label}`).join(', ')
console.log(`\n${counts.pass} passed / ${counts.fail} required failures (${detail})`)
console.log(`every test not passed: ${failuresFile}`)
