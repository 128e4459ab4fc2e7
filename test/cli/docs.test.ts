// The project documents itself (issue 9): no reference outside the repository, a design overview in docs/, and
// README's account of what an isolate has matches what an isolate has.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { ROOT, runCli } from '../helpers.ts';
import { cliWorkspace } from './helpers.ts';

describe('the project documents itself', () => {
  it('README and docs/ point at nothing outside the repository; docs/design.md covers parts, data flow, lifecycle, security', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const design = await readFile(path.join(ROOT, 'docs', 'design.md'), 'utf8');
    for (const [name, text] of [['README.md', readme], ['docs/design.md', design]] as const) assert.doesNotMatch(text, /\.\.\/shared|\/work\//, name);
    assert.match(readme, /\[docs\/design\.md\]\(docs\/design\.md\)/);
    for (const heading of ['## 1. Parts', '## 2. Data flow', '## 3. Extension lifecycle', '## 4. Security model']) assert.ok(design.includes(heading), heading);
  });

  it('every global README says an isolate lacks is missing in an isolate, and console is there', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const bullet = /- \*\*Not there\*\*:([\s\S]*?)\n- \*\*/.exec(readme)?.[1];
    assert.ok(bullet, 'README has a "Not there" bullet');
    const names = [...bullet.matchAll(/`([A-Za-z]+)`/g)].map((m) => m[1]!);
    assert.ok(names.length >= 10, names.join(', '));
    const ws = await cliWorkspace(['globals']);
    const r = await runCli(['call', 'globals', 'typeof', '--plugins', ws.plugins, '--trust', ws.trust, '--data-dir', ws.data, '--input', JSON.stringify([...names, 'console', 'TextEncoder', 'setTimeout'])], { cwd: ws.root });
    assert.equal(r.code, 0, r.stderr);
    const types = JSON.parse(r.stdout) as Record<string, string>;
    for (const n of names) assert.equal(types[n], 'undefined', `${n} is not in an isolate`);
    assert.equal(types.console, 'object');
  });
});
