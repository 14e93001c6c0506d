/**
 * Enrollment: makes a key pair locally (the private key never leaves this machine), trusts the
 * gateway by system CAs, a CA file, or the CA pin inside the token, and stores the client
 * certificate it gets for its CSR, checked before anything is saved.
 */
import { rmSync, readFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { ConnectorError, UsageError } from '../errors.js';
import { createCsr, generateKeyPair, issuedBy, opensslReason, pinOf } from './ca.js';
import { proxyFor, type OutboundProxy, type ProxySetting } from '../gateway/outboundProxy.js';
import { decodeToken } from './tokens.js';
import { CONNECTOR_VERSION, gatewayUrlProblem, getText, isForeignCa, postJson, talkingToGateway } from './gatewayCalls.js';
import { TOKEN_UNSPENT, filesOf, makeStateDir, stateDirUnwritable, writeAtomic, writeFailure, type ConnectorState } from './stateDir.js';

/** The PEM certificate(s) in a --ca file; a file with none failed later as "not trusted", naming neither file nor cause. */
export function readCaFile(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (e) {
    // a local file: said as such, not as a failure to enroll at the gateway's address
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a directory, not a certificate file' : code === 'EACCES' ? 'not readable by this user' : (e as Error).message;
    throw new ConnectorError('ERR_CA_FILE', `--ca ${file}: ${why}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConnectorError('ERR_CA_FILE', `${file} holds no PEM certificate (a -----BEGIN CERTIFICATE----- block): give the CA certificate of the gateway's connectors listener`);
  try {
    new X509Certificate(pem);
  } catch (e) {
    throw new ConnectorError('ERR_CA_FILE', `${file}: its certificate cannot be read (${opensslReason(e)})`);
  }
  return pem;
}

/** The CA to trust for the gateway: a file, the pinned CA, or the system store. */
async function gatewayCa(gateway: URL, pin: string | undefined, caFile: string | undefined, proxy: OutboundProxy | undefined): Promise<string | undefined> {
  if (caFile) return readCaFile(caFile);
  if (!pin) return undefined;
  // The CA is fetched unauthenticated and accepted only if it matches the pin.
  let pem: string;
  try {
    pem = await talkingToGateway(gateway, () => getText(new URL('/v1/ca', gateway), { rejectUnauthorized: false }, proxy));
  } catch (e) {
    const status = (e as { status?: number }).status;
    if (status === undefined) throw e;
    // (a stack trace before: "Error: GET /v1/ca: 502")
    throw new ConnectorError('ERR_CA_FETCH', `the gateway at ${gateway.origin} answered GET /v1/ca with ${status}, not its connector CA: is it the connectors.listen endpoint?${proxy ? ` (or the proxy ${proxy.display} answered for it)` : ''}${TOKEN_UNSPENT}`);
  }
  let answered: string;
  try {
    answered = pinOf(pem);
  } catch {
    throw new ConnectorError('ERR_CA_FETCH', `the gateway at ${gateway.origin} answered GET /v1/ca with something that is no PEM certificate (${JSON.stringify(pem.slice(0, 40))}): is it the connectors.listen endpoint?${TOKEN_UNSPENT}`);
  }
  if (answered !== pin) {
    throw new ConnectorError(
      'ERR_CA_PIN_MISMATCH',
      `the gateway at ${gateway.origin} presented a connector CA that does not match the pin in the token: refusing to enroll. The token was made by another gateway, or before this gateway's connector CA changed; make a new one with \`drawbridge token create\` on the gateway at ${gateway.origin}`,
    );
  }
  return pem;
}

/**
 * The gateway's certificate at enrollment is not of the CA the connector trusts. With the CA from
 * the token's pin (it matched), something between the two answers for the gateway: an inspecting
 * proxy, most often. With --ca, the file may be the wrong CA. Either way the token was not sent.
 */
function untrustedAtEnrollment(gateway: URL, err: Error, how: { pinned: boolean; proxy?: OutboundProxy }): ConnectorError {
  const inspecting = how.proxy ? `if the proxy ${how.proxy.display} inspects TLS, exempt ${gateway.host} from inspection (a connector's path cannot be inspected)` : undefined;
  const why = how.pinned
    ? `the gateway at ${gateway.origin} presented a certificate that the connector CA named by the token's pin did not sign (${err.message}): something between this host and the gateway answers for it${inspecting ? `; ${inspecting}` : ''}`
    : `the gateway at ${gateway.origin} presented a certificate that --ca did not sign (${err.message}): --ca must be the gateway's connector CA, the ca.pem in its stateDir's connectors/ folder, not the CA of its public listener${inspecting ? `, or ${inspecting}` : ''}`;
  return new ConnectorError('ERR_GATEWAY_UNTRUSTED', `${why}${TOKEN_UNSPENT}`);
}

export async function enroll(opts: { gateway: string; token: string; stateDir: string; caFile?: string; proxy?: ProxySetting }): Promise<ConnectorState> {
  const problem = gatewayUrlProblem(opts.gateway);
  if (problem) throw new UsageError(problem);
  const gateway = new URL(opts.gateway);
  gateway.protocol = 'https:';
  const payload = decodeToken(opts.token);
  const proxy = proxyFor(gateway, opts.proxy);
  const ca = await gatewayCa(gateway, payload.p, opts.caFile, proxy);
  const kp = await generateKeyPair();
  const csr = await createCsr(kp.keys, 'drawbridge-connector');
  const f = filesOf(opts.stateDir);
  // What can be written is written before the token is spent: a state dir that took nothing
  // (read-only, full, not a directory) cost the token and left a connector id nobody held.
  const before = [[f.key, kp.keyPem, 0o600], ...(ca ? [[f.ca, ca, 0o644]] : [])] as [string, string, number][];
  for (const [file, data, mode] of before) {
    try {
      makeStateDir(opts.stateDir);
      writeAtomic(file, data, mode);
    } catch (e) {
      const err = e instanceof ConnectorError ? e : stateDirUnwritable(opts.stateDir, e, file);
      throw new ConnectorError(err.code, `${err.message}${TOKEN_UNSPENT}`);
    }
  }
  let res: Awaited<ReturnType<typeof postJson>>;
  try {
    res = await talkingToGateway(gateway, () => postJson(new URL('/v1/enroll', gateway), { token: opts.token.trim(), csr, publicKey: kp.publicKeyDer.toString('base64'), version: CONNECTOR_VERSION }, { ca }, proxy)).catch((e: unknown) => {
      // (a wrong --ca with no proxy is said by the CLI's words for an untrusted certificate)
      throw isForeignCa(e) && (!opts.caFile || proxy) ? untrustedAtEnrollment(gateway, e as Error, { pinned: !opts.caFile, proxy }) : e;
    });
    if (res.status !== 200) throw new ConnectorError(String(res.body.error ?? 'ERR_ENROLL'), `enrollment refused (${res.status}): ${String(res.body.message ?? 'no reason given')}`);
  } catch (e) {
    for (const [file] of before) rmSync(file, { force: true });
    throw e;
  }
  const wrong = enrollmentAnswerProblem(res.body, kp.keyPem, ca);
  if (wrong) {
    for (const [file] of before) rmSync(file, { force: true });
    const id = typeof res.body.id === 'string' && SAFE_NAME.test(res.body.id) ? ` (and revoke ${res.body.id} should it be listed)` : '';
    throw new ConnectorError('ERR_ENROLL_ANSWER', `the gateway at ${gateway.origin} answered the enrollment with ${wrong}: nothing was saved; it took the token, so make a new one${id}`);
  }
  // connector.json goes last: a state dir without it holds no enrollment (isEnrolled), so an
  // enrollment cut short leaves nothing that `connector run` would start from half-written.
  const state: ConnectorState = { id: String(res.body.id), group: String(res.body.group), gateway: gateway.origin, notAfter: String(res.body.notAfter) };
  const after = [[f.cert, String(res.body.cert)], ...(ca ? [] : [[f.ca, String(res.body.ca)]]), [f.state, JSON.stringify(state, null, 2) + '\n']] as [string, string][];
  for (const [file, data] of after) {
    try {
      writeAtomic(file, data);
    } catch (e) {
      throw new ConnectorError(
        'ERR_ENROLLED_NOT_SAVED',
        `connector ${state.id} was enrolled at the gateway, but its certificate cannot be saved in ${opts.stateDir} (${file}: ${writeFailure(e)}): revoke ${state.id} (connectors.revoked on the gateway) and enroll again with a new token`,
      );
    }
  }
  return state;
}

/** what a connector id or group name may be: they go into file contents, logs and headers */
const SAFE_NAME = /^[\w.-]{1,128}$/;

/**
 * What is wrong with a 200 answer to /v1/enroll, or undefined. Saved unchecked, a body that was
 * not JSON, or `{}`, said "enrolled connector undefined in group undefined" (exit 0) and left a
 * state dir whose cert.pem read "undefined"; `connector run` then failed on it.
 */
function enrollmentAnswerProblem(body: Record<string, unknown>, keyPem: string, ca: string | undefined): string | undefined {
  for (const field of ['id', 'group'] as const) {
    if (typeof body[field] !== 'string' || !SAFE_NAME.test(body[field] as string)) return `no usable "${field}" (${JSON.stringify(body[field] ?? null).slice(0, 40)})`;
  }
  if (typeof body.notAfter !== 'string' || !Number.isFinite(Date.parse(body.notAfter))) return 'no usable "notAfter"';
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(String(body.cert));
  } catch {
    return 'no readable certificate';
  }
  if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return 'a certificate of another key than this connector\'s';
  let issuer: X509Certificate;
  try {
    issuer = new X509Certificate(ca ?? String(body.ca));
  } catch {
    return 'no readable connector CA';
  }
  if (!issuedBy(cert, issuer)) return 'a certificate its connector CA did not sign';
  return undefined;
}
