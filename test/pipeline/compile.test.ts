import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../support/harness.js';
import { Browser, startStack, type Stack } from '../identity/support.js';

/** An sso plugin that carries a ticket in the header its options name, as kcd-shim does with delegationHeader. */
const TICKET_PLUGIN = `export default {
  name: 'ticket-sso', kind: 'sso', apiVersion: 1,
  optionsSchema: { type: 'object', properties: { header: { type: 'string' } }, required: ['header'], additionalProperties: false },
  create(options) {
    const header = options.header.toLowerCase();
    return { name: 'ticket-sso', kind: 'sso', stripHeaders: [header], run: (ctx) => ({ kind: 'continue', setHeaders: { [header]: 'Negotiate real-for-' + ctx.identity.user } }) };
  },
};
`;

describe('pipeline: compile turns a plugin\'s stripHeaders into what the edge drops', function () {
  this.timeout(30_000);
  let s: Stack;
  before(async () => {
    const dir = tempDir();
    const plugin = join(dir, 'ticket-sso.mjs');
    writeFileSync(plugin, TICKET_PLUGIN);
    s = await startStack({
      extraYaml: `plugins: [${JSON.stringify(plugin)}]`,
      apps: (backend) => `
  - name: Payroll
    externalUrl: http://app.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    sso: { plugin: ticket-sso, options: { header: X_Kerberos_Ticket } }
`,
    });
  });
  after(async () => s?.stop());

  const last = () => s.backend.received[s.backend.received.length - 1]!;

  it('a name written with "_" also drops the client\'s dashed and dotted spellings; the app gets only the plugin\'s value', async () => {
    const b = new Browser();
    assert.equal((await b.browse(`${s.origin('app')}/`, { user: 'carol', password: 'carol-pw' })).res.status, 200);
    const res = await b.get(`${s.origin('app')}/pay`, { 'x-kerberos-ticket': 'Negotiate forged', 'x.kerberos.ticket': 'Negotiate forged2', 'x_kerberos_ticket': 'Negotiate forged3' });
    assert.equal(res.status, 200);
    const h = last().headers;
    assert.equal(last().url, '/pay');
    assert.equal(h['x_kerberos_ticket'], 'Negotiate real-for-carol');
    assert.equal(h['x-kerberos-ticket'], undefined);
    assert.equal(h['x.kerberos.ticket'], undefined);
  });
});
