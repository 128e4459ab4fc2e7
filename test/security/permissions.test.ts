// Issue 7 §5: what an untrusted extension may be granted is the operator's choice. Under trust policy `warn`
// an unsigned extension used to grant itself any env variable (a cloud secret) and any network host. Now the
// host's ceiling (policy.untrusted, default: no env, no network) and the operator's approvals
// (extensions.<id>.allow) decide, and an extension asking for more is refused at start naming each permission.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PlinthError } from '../../src/errors.ts';
import { ops, securityHost } from './helpers.ts';

const SECRET_ENV = { AWS_SECRET_ACCESS_KEY: 'must-not-leak', REGION: 'eu-west-1' };

/** Why `id` is not running, as the host reports it to a caller. */
function refusal(h: Awaited<ReturnType<typeof securityHost>>, id: string): PlinthError {
  const entry = h.host.list().find((e) => e.id === id);
  assert.ok(entry, `${id} is listed`);
  assert.equal(entry.state, 'failed');
  return PlinthError.fromJSON(entry.reason);
}

describe('untrusted extensions: a ceiling, approvals, and a refusal that names each permission', () => {
  it('an unsigned extension asking for env and network is refused at start, naming every permission; the host serves the others', async () => {
    const h = await securityHost(
      [{ fixture: 'hostile', id: 'greedy', permissions: { env: ['AWS_SECRET_ACCESS_KEY', 'REGION'], network: ['169.254.169.254', 'api.example.com:443'], kv: true } }],
      { env: SECRET_ENV },
    );
    try {
      const err = refusal(h, 'greedy');
      assert.equal(err.code, 'PLINTH_ERR_PERMISSION_NOT_APPROVED');
      assert.deepEqual(err.problems.map((p) => p.path), ['/plinth/permissions/env/0', '/plinth/permissions/env/1', '/plinth/permissions/network/0', '/plinth/permissions/network/1']);
      for (const name of ['AWS_SECRET_ACCESS_KEY', 'REGION', '169.254.169.254', 'api.example.com:443']) assert.match(err.message, new RegExp(name.replace(/\./g, '\\.')));
      assert.match(err.hint ?? '', /extensions\."greedy"\.allow: \{"env":\["AWS_SECRET_ACCESS_KEY","REGION"\],"network":\["169\.254\.169\.254","api\.example\.com:443"\]\}/);
      await assert.rejects(h.host.call('greedy', 'ops', { steps: [] }), (e: PlinthError) => e.code === 'PLINTH_ERR_EXTENSION_UNAVAILABLE');
      await h.bystanderAnswers();
    } finally {
      await h.stop();
    }
  });

  it('approved in extensions.<id>.allow, it starts and gets exactly what was approved and asked; the ceiling widens it for all', async () => {
    const h = await securityHost(
      [
        { fixture: 'hostile', id: 'approved', permissions: { env: ['AWS_SECRET_ACCESS_KEY'], kv: true } },
        { fixture: 'hostile', id: 'ceiling-only', permissions: { env: ['REGION'] } },
        { fixture: 'hostile', id: 'half-approved', permissions: { env: ['REGION', 'AWS_SECRET_ACCESS_KEY'], network: ['api.example.com:443'] } },
      ],
      {
        env: SECRET_ENV,
        config: 'policy: { untrusted: { env: [REGION] } }\nextensions:\n  approved: { allow: { env: [AWS_SECRET_ACCESS_KEY, OTHER] } }\n  half-approved: { allow: { network: ["api.example.com:*"] } }\n',
      },
    );
    try {
      const [secret, other] = await ops(h.host, 'approved', [
        { call: 'env', args: ['AWS_SECRET_ACCESS_KEY'] },
        { call: 'env', args: ['OTHER'] },
      ]);
      assert.equal(secret?.value, 'must-not-leak');
      assert.equal(other?.code, 'PLINTH_ERR_PERMISSION_DENIED', 'an approval grants nothing the manifest did not ask for');
      const [region] = await ops(h.host, 'ceiling-only', [{ call: 'env', args: ['REGION'] }]);
      assert.equal(region?.value, 'eu-west-1');
      // REGION is under the ceiling and the network grant is covered by host:*, but the secret is not approved.
      const err = refusal(h, 'half-approved');
      assert.equal(err.code, 'PLINTH_ERR_PERMISSION_NOT_APPROVED');
      assert.deepEqual(err.problems.map((p) => p.path), ['/plinth/permissions/env/1']);
      await h.bystanderAnswers();
    } finally {
      await h.stop();
    }
  });

  it('a signed extension from a trusted publisher gets what its manifest asks, without approval', async () => {
    const h = await securityHost([{ fixture: 'hostile', id: 'trusted', signed: true, permissions: { env: ['AWS_SECRET_ACCESS_KEY'] } }], { env: SECRET_ENV });
    try {
      const [secret] = await ops(h.host, 'trusted', [{ call: 'env', args: ['AWS_SECRET_ACCESS_KEY'] }]);
      assert.equal(secret?.value, 'must-not-leak');
    } finally {
      await h.stop();
    }
  });

  it('the ceiling covers fs, kv and events too: turned off, an untrusted extension asking for them is refused', async () => {
    const h = await securityHost(
      [
        { fixture: 'hostile', id: 'stateful', permissions: { fs: { write: ['out'] }, kv: true, events: { publish: ['orders.#'] } } },
        { fixture: 'hostile', id: 'plain' },
      ],
      { config: 'policy: { untrusted: { fs: false, kv: false, events: false } }\n' },
    );
    try {
      const err = refusal(h, 'stateful');
      assert.equal(err.code, 'PLINTH_ERR_PERMISSION_NOT_APPROVED');
      assert.deepEqual(err.problems.map((p) => p.path), ['/plinth/permissions/fs', '/plinth/permissions/kv', '/plinth/permissions/events/publish']);
      const [none] = await ops(h.host, 'plain', [{ call: 'env', args: ['HOME'] }]);
      assert.equal(none?.code, 'PLINTH_ERR_PERMISSION_DENIED', 'an extension that asks for nothing starts, and gets nothing');
      await h.bystanderAnswers();
    } finally {
      await h.stop();
    }
  });

  it('a network grant the manifest schema lets through but that is no grant is refused at start', async () => {
    const h = await securityHost([{ fixture: 'hostile', id: 'odd-grant', signed: true, permissions: { network: ['0x7f.1'] } }]);
    try {
      const err = refusal(h, 'odd-grant');
      assert.equal(err.code, 'PLINTH_ERR_MANIFEST_INVALID');
      assert.equal(err.problems[0]?.path, '/plinth/permissions/network/0');
    } finally {
      await h.stop();
    }
  });
});
