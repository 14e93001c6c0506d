/**
 * `drawbridge gateway` on a stateDir whose files were lost, damaged or restored from another
 * gateway: the start stops with one line that names the file and what to do, or it goes on
 * and says what it changed. The real CLI, as an operator starts it.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import { join } from 'node:path';
import { ConnectorCa, pinOf } from '../../src/connector/ca.js';
import { createToken } from '../../src/connector/tokens.js';
import { AssertionKeyStore } from '../../src/plugins/headers/assertionKeys.js';
import { eventually, spawnGateway, tempDir } from '../support/harness.js';

const YAML = `
gateway:
  publicUrl: http://app.test
  listen: { http: 127.0.0.1:0 }
  stateDir: ./state
connectors: { listen: 127.0.0.1:0 }
connectorGroups: { g1: {} }
apps:
  - { name: Tun, externalUrl: "http://app.test/", internalUrl: "http://127.0.0.1:9/", connectorGroup: g1, preAuth: passthrough }
`;

/** with a signed-in app: its stage reads sessions/revoked.jsonl (the provider is never asked at start) */
const OIDC_YAML = `${YAML}  - name: Team
    externalUrl: http://team.test/
    internalUrl: http://127.0.0.1:9/
    preAuth: oidc
    headers: { assertion: X-Drawbridge-Assertion }
identity: { issuer: "http://127.0.0.1:9", clientId: drawbridge, clientSecret: client-secret-0123456789 }
session: { secrets: ["a-session-secret-of-at-least-32-characters"] }
`;

/** A config dir whose stateDir holds a connector CA and a token key, as after one `token create`. */
async function prepared(): Promise<{ dir: string; state: string; conn: string }> {
  const dir = tempDir();
  writeFileSync(join(dir, 'gateway.config.yaml'), YAML);
  const state = join(dir, 'state');
  const ca = await ConnectorCa.loadOrCreate(state);
  createToken(state, 'g1', 60_000, ca.pin);
  return { dir, state, conn: join(state, 'connectors') };
}

/** Starts the CLI on the dir; resolves when it exits or has started (then stops it). */
async function start(dir: string): Promise<{ code: number | null; output: string; started: boolean }> {
  const gw = spawnGateway(join(dir, 'gateway.config.yaml'));
  const ended = await Promise.race([gw.exited, eventually(() => gw.output().includes('"gateway started"'), 15_000).then(() => undefined)]);
  if (ended) return { code: ended.code, output: gw.output(), started: false };
  gw.child.kill('SIGTERM');
  const { code } = await gw.exited;
  return { code, output: gw.output(), started: true };
}

function logLines(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** exit 1 and exactly one line on stderr (no JSON log, no stack) */
function assertOneLine(r: { code: number | null; output: string; started: boolean }, line: string): void {
  assert.equal(r.started, false, r.output);
  assert.equal(r.code, 1, r.output);
  const text = r.output.split('\n').filter((l) => l && !l.startsWith('{'));
  assert.deepEqual(text, [line], r.output);
}

const REMEDY = 'restore ca.key and ca.pem from a backup, or remove both to create a new connector CA and enroll every connector again';

describe('drawbridge gateway on a stateDir with lost, damaged or foreign files', function () {
  this.timeout(60_000);

  describe('the connector CA', () => {
    it('ca.pem without ca.key stops the start, naming both, and no key is made beside the certificate', async () => {
      const { dir, conn } = await prepared();
      const pem = readFileSync(join(conn, 'ca.pem'), 'utf8');
      rmSync(join(conn, 'ca.key'));
      assertOneLine(await start(dir), `drawbridge gateway: ${join(conn, 'ca.pem')} exists without ca.key: ${REMEDY}`);
      assert.equal(existsSync(join(conn, 'ca.key')), false);
      assert.equal(readFileSync(join(conn, 'ca.pem'), 'utf8'), pem);
    });

    it('ca.key without ca.pem stops the start, naming both', async () => {
      const { dir, conn } = await prepared();
      rmSync(join(conn, 'ca.pem'));
      assertOneLine(await start(dir), `drawbridge gateway: ${join(conn, 'ca.key')} exists without ca.pem: ${REMEDY}`);
      assert.equal(existsSync(join(conn, 'ca.pem')), false);
    });

    it('a ca.key of another CA (a restore from another gateway) stops the start', async () => {
      const { dir, conn } = await prepared();
      const other = tempDir();
      await ConnectorCa.loadOrCreate(other);
      writeFileSync(join(conn, 'ca.key'), readFileSync(join(other, 'connectors', 'ca.key')));
      assertOneLine(await start(dir), `drawbridge gateway: ${join(conn, 'ca.key')} is not the key of ${join(conn, 'ca.pem')}: ${REMEDY}`);
    });

    it('the CA key restored in SEC1 form (BEGIN EC PRIVATE KEY, as openssl ec writes it) is read: the gateway starts on the same CA', async () => {
      const { dir, conn } = await prepared();
      const pkcs8 = readFileSync(join(conn, 'ca.key'), 'utf8');
      writeFileSync(join(conn, 'ca.key'), createPrivateKey(pkcs8).export({ type: 'sec1', format: 'pem' }), { mode: 0o600 });
      const pin = pinOf(readFileSync(join(conn, 'ca.pem'), 'utf8'));
      const r = await start(dir);
      assert.ok(r.started, r.output);
      assert.equal(logLines(r.output).find((l) => l.msg === 'connector hub listening')?.caPin, pin);
    });

    it('a new CA beside used tokens (a rotation, a lost CA) is logged at warn with its pin', async () => {
      const { dir, conn } = await prepared();
      writeFileSync(join(conn, 'used-tokens.jsonl'), '{"n":"x","e":1}\n');
      rmSync(join(conn, 'ca.key'));
      rmSync(join(conn, 'ca.pem'));
      const r = await start(dir);
      assert.equal(r.started, true, r.output);
      const created = logLines(r.output).find((l) => String(l.msg).startsWith('created a new connector CA'));
      assert.ok(created, r.output);
      assert.equal(created.level, 'warn');
      assert.equal(created.msg, `created a new connector CA in ${conn}; connectors enrolled with another CA must be enrolled again (token create, then connector enroll)`);
      assert.equal(created.caPin, (await ConnectorCa.loadOrCreate(join(dir, 'state'))).pin);
    });

    it('a new CA where connectors were listed before (connectors/known.json) is logged at warn', async () => {
      const { dir, conn } = await prepared();
      writeFileSync(join(conn, 'known.json'), JSON.stringify({ format: 1, connectors: [] }) + '\n');
      rmSync(join(conn, 'ca.key'));
      rmSync(join(conn, 'ca.pem'));
      const r = await start(dir);
      assert.equal(r.started, true, r.output);
      const created = logLines(r.output).find((l) => String(l.msg).startsWith('created a new connector CA'));
      assert.equal(created?.level, 'warn', r.output);
    });

    it('the first start on an empty stateDir logs the new CA at info, as a first start, not as connectors to enroll again', async () => {
      const dir = tempDir();
      writeFileSync(join(dir, 'gateway.config.yaml'), YAML);
      const r = await start(dir);
      assert.equal(r.started, true, r.output);
      const created = logLines(r.output).find((l) => String(l.msg).startsWith('created the connector CA'));
      assert.equal(created?.level, 'info', r.output);
      assert.equal(created?.msg, `created the connector CA in ${join(dir, 'state', 'connectors')} (a first start: no connector was enrolled with this stateDir)`);
      assert.equal(typeof created?.caPin, 'string');
    });
  });

  describe('damaged files: one line naming the file and what to do, exit 1, no stack', () => {
    const ca = (file: string, what: string) => (conn: string) => `drawbridge gateway: ${join(conn, file)} is not ${what}`;
    const cases: [string, (conn: string) => void, (conn: string) => string, RegExp?][] = [
      ['an empty ca.key', (c) => writeFileSync(join(c, 'ca.key'), ''), ca('ca.key', 'a readable PEM private key'), /^ \(.+\): restore ca.key and ca.pem/],
      ['a ca.pem cut short', (c) => writeFileSync(join(c, 'ca.pem'), readFileSync(join(c, 'ca.pem'), 'utf8').slice(0, 100)), ca('ca.pem', 'a readable PEM certificate'), /^ \(.+\): restore ca.key and ca.pem/],
      ['an empty ca.pem', (c) => writeFileSync(join(c, 'ca.pem'), ''), ca('ca.pem', 'a readable PEM certificate'), /^ \(.+\): restore ca.key and ca.pem/],
      ['a directory in place of ca.key', (c) => (rmSync(join(c, 'ca.key')), mkdirSync(join(c, 'ca.key'))), (c) => `drawbridge gateway: ${join(c, 'ca.key')} is a directory, not a file: ${REMEDY}`],
      ['an empty token.key', (c) => writeFileSync(join(c, 'token.key'), ''), (c) => `drawbridge gateway: ${join(c, 'token.key')} is damaged (not a base64 key of 32 bytes): remove it to make a new one (enrollment tokens issued and not yet used stop working)`],
      ['a directory in place of token.key', (c) => (rmSync(join(c, 'token.key')), mkdirSync(join(c, 'token.key'))), (c) => `drawbridge gateway: ${join(c, 'token.key')} is a directory, not a file: remove it to make a new one (enrollment tokens issued and not yet used stop working)`],
    ];
    for (const [what, damage, said, rest] of cases) {
      it(what, async () => {
        const { dir, conn } = await prepared();
        damage(conn);
        const r = await start(dir);
        if (!rest) return assertOneLine(r, said(conn));
        assertOneLine(r, r.output.split('\n').find((l) => l.startsWith('drawbridge gateway: '))!);
        const line = r.output.split('\n').find((l) => l.startsWith('drawbridge gateway: '))!;
        assert.ok(line.startsWith(said(conn)), line);
        assert.match(line.slice(said(conn).length), rest);
        assert.ok(line.endsWith(REMEDY), line);
      });
    }

    it('a damaged assertion-keys.json: named, not a config error at a YAML position', async () => {
      const { dir, state } = await prepared();
      writeFileSync(join(dir, 'gateway.config.yaml'), OIDC_YAML);
      writeFileSync(join(state, 'assertion-keys.json'), '{"keys": [', { mode: 0o600 });
      const r = await start(dir);
      const line = r.output.split('\n').find((l) => l.startsWith('drawbridge gateway: '))!;
      assertOneLine(r, line);
      assert.ok(line.startsWith(`drawbridge gateway: ${join(state, 'assertion-keys.json')} is not readable JSON (`), line);
      assert.ok(line.endsWith('): restore it from a backup, or remove it to make a new signing key'), line);
    });

    it('a directory in place of sessions/revoked.jsonl: named, not a config error at a YAML position', async () => {
      const { dir, state } = await prepared();
      writeFileSync(join(dir, 'gateway.config.yaml'), OIDC_YAML);
      mkdirSync(join(state, 'sessions', 'revoked.jsonl'), { recursive: true });
      assertOneLine(
        await start(dir),
        `drawbridge gateway: ${join(state, 'sessions', 'revoked.jsonl')} is a directory, not a file: move it aside and start again (sessions signed out before are accepted again until their cookies expire)`,
      );
    });
  });

  it('key files open to group or others: a warning at start naming each file, its mode and the chmod', async () => {
    const { dir, state, conn } = await prepared();
    writeFileSync(join(dir, 'gateway.config.yaml'), OIDC_YAML);
    await new AssertionKeyStore(state).ready();
    const files = [join(conn, 'ca.key'), join(conn, 'token.key'), join(state, 'assertion-keys.json')];
    for (const f of files) chmodSync(f, 0o644);
    const r = await start(dir);
    assert.equal(r.started, true, r.output);
    const warned = logLines(r.output).filter((l) => l.level === 'warn' && l.mode === '0644');
    assert.deepEqual(
      warned.map((l) => l.msg),
      files.map((f) => `${f} is a private key readable or writable by group or others (mode 0644): run chmod 600 ${f}`),
    );
  });

  it('key files at 0600: no such warning', async () => {
    const { dir } = await prepared();
    const r = await start(dir);
    assert.equal(r.started, true, r.output);
    assert.equal(logLines(r.output).filter((l) => l.level === 'warn').length, 0, r.output);
  });
});
