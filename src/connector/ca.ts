/**
 * The connector CA: a private ECDSA P-256 root kept in the gateway's stateDir.
 * It signs connector client certificates (enrollment, renewal) and the hub's
 * own TLS server certificate, so a connector can trust the hub through a pin
 * of this CA carried inside its enrollment token.
 */
import { createHash, createPrivateKey, randomBytes, webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import { lstatSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { readStateFile, StateFileError, makeDirs } from '../config/stateFile.js';
import { DrawbridgeError, OperationalError } from '../errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const SIGN_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const;

export class EnrollmentError extends DrawbridgeError {}

/** what an operator can do about a connector CA that cannot be used as it is */
const CA_REMEDY = 'restore ca.key and ca.pem from a backup, or remove both to create a new connector CA and enroll every connector again';

/**
 * How far before its issue a certificate's notBefore is set, for clocks a little behind. A
 * certificate's lifetime is notAfter - notBefore - this; its issue time is notBefore + this.
 */
export const CERT_BACKDATE_MS = 60_000;

/** When a certificate was issued, by the issuing gateway's clock. */
export function issuedAt(notBefore: number): number {
  return notBefore + CERT_BACKDATE_MS;
}

/**
 * A connector renews no sooner than this after its last renewal (or a third of a shorter
 * lifetime); the hub refuses one sooner than this or a tenth of the lifetime, below the
 * connector's own floor, so only a misbehaving connector meets it.
 */
export const MIN_RENEWAL_GAP_MS = 60_000;

/** The hub's own TLS certificate; the hub replaces it while running, well before it expires. */
export const SERVER_CERT_LIFETIME_MS = 365 * 86400_000;

export interface KeyPairPem {
  keyPem: string;
  publicKeyDer: Buffer;
  keys: CryptoKeyPair;
}

export async function generateKeyPair(): Promise<KeyPairPem> {
  const keys = (await webcrypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
  return { keys, keyPem: toPem(pkcs8, 'PRIVATE KEY'), publicKeyDer: spki };
}

export function toPem(der: Buffer, label: string): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** sha256 of the CA certificate's DER, base64url: what tokens carry as the pin */
export function pinOf(certPem: string): string {
  return createHash('sha256').update(new NodeX509(certPem).raw).digest('base64url');
}

export async function createCsr(keys: CryptoKeyPair, name: string): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${name}`, keys, signingAlgorithm: SIGN_ALG });
  return csr.toString('pem');
}

async function importPrivateKey(pem: string): Promise<CryptoKey> {
  // Through Node's parser, so a key in SEC1 form (`BEGIN EC PRIVATE KEY`, as `openssl ec` writes a
  // restored or converted key) is read too; its PEM body is not PKCS#8.
  const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, EC_ALG, false, ['sign']) as Promise<CryptoKey>;
}

export interface IssuedClient {
  id: string;
  group: string;
  certPem: string;
  notAfter: Date;
}

/** What a client certificate says: CN is the connector id, OU its group. */
export function identityOfCert(cert: { subject?: Record<string, unknown> | null; valid_to?: string }): { id: string; group: string } | undefined {
  const cn = cert.subject?.CN;
  const ou = cert.subject?.OU;
  if (typeof cn !== 'string' || typeof ou !== 'string') return undefined;
  return { id: cn, group: ou };
}

export class ConnectorCa {
  private constructor(
    readonly certPem: string,
    private readonly signingKey: CryptoKey,
    private readonly cert: x509.X509Certificate,
    /** made by this call (first start, or ca.key and ca.pem removed): connectors enrolled before no longer trust the gateway */
    readonly created: boolean,
  ) {}

  get pin(): string {
    return pinOf(this.certPem);
  }

  /**
   * Loads the CA from `<stateDir>/connectors`, creating it when neither of its
   * files is there. One file without the other is never completed: a new key
   * beside the old certificate signed hub and connector certificates that
   * nothing trusts, and a new certificate cuts off every enrolled connector;
   * either is the operator's call, so the start stops and says so.
   */
  static async loadOrCreate(stateDir: string): Promise<ConnectorCa> {
    const dir = join(stateDir, 'connectors');
    makeDirs(dir);
    const keyFile = join(dir, 'ca.key');
    const certFile = join(dir, 'ca.pem');
    let found = [present(keyFile), present(certFile)];
    // `token create` and the gateway may be creating the CA at this moment: the second file follows within milliseconds.
    if (found[0] !== found[1]) {
      await new Promise((r) => setTimeout(r, 200));
      found = [present(keyFile), present(certFile)];
    }
    if (found[0] && found[1]) return ConnectorCa.read(keyFile, certFile, false);
    if (found[0] || found[1]) {
      const [there, missing] = found[0] ? [keyFile, 'ca.pem'] : [certFile, 'ca.key'];
      throw new OperationalError('ERR_CONNECTOR_CA_INCOMPLETE', `${there} exists without ${missing}: ${CA_REMEDY}`);
    }
    const kp = await generateKeyPair();
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: `CN=Drawbridge connector CA ${randomBytes(4).toString('hex')}`,
      notBefore: new Date(now - CERT_BACKDATE_MS),
      notAfter: new Date(now + 20 * 365 * 86400_000),
      keys: kp.keys,
      signingAlgorithm: SIGN_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(kp.keys.publicKey),
      ],
    });
    try {
      // wx: two processes (gateway and `token create`) may race; the first one wins.
      writeFileSync(keyFile, kp.keyPem, { mode: 0o600, flag: 'wx' });
      writeFileSync(certFile, cert.toString('pem') + '\n', { flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      await new Promise((r) => setTimeout(r, 200));
      return ConnectorCa.read(keyFile, certFile, false);
    }
    return ConnectorCa.read(keyFile, certFile, true);
  }

  private static async read(keyFile: string, certFile: string, created: boolean): Promise<ConnectorCa> {
    // a dangling symlink (a secret mount not mounted) is present but reads as missing
    const text = (file: string) => readStateFile(file, CA_REMEDY) ?? fail(file, 'a file that can be read (a link to nothing?)');
    const fail = (file: string, what: string, e?: unknown): never => {
      throw new StateFileError('ERR_CONNECTOR_CA_DAMAGED', `${file} is not ${what}${e ? ` (${opensslReason(e)})` : ''}: ${CA_REMEDY}`, { file });
    };
    const certPem = text(certFile);
    const keyPem = text(keyFile);
    let cert: NodeX509;
    try {
      cert = new NodeX509(certPem);
    } catch (e) {
      return fail(certFile, 'a readable PEM certificate', e);
    }
    let key: CryptoKey;
    try {
      // A key of another CA (a backup of another gateway, a partial restore) signs certificates no connector accepts.
      if (!cert.checkPrivateKey(createPrivateKey(keyPem))) {
        throw new OperationalError('ERR_CONNECTOR_CA_MISMATCH', `${keyFile} is not the key of ${certFile}: ${CA_REMEDY}`);
      }
      key = await importPrivateKey(keyPem);
    } catch (e) {
      if (e instanceof OperationalError) throw e;
      return fail(keyFile, 'a readable PEM private key', e);
    }
    return new ConnectorCa(certPem, key, new x509.X509Certificate(certPem), created);
  }

  /**
   * Signs a connector's CSR. The CSR must verify and carry exactly the public
   * key the connector announced; the subject is ours, never the CSR's.
   */
  async issueClient(csrPem: string, announcedPublicKey: Buffer, group: string, lifetimeMs: number, id = `c-${randomBytes(8).toString('hex')}`): Promise<IssuedClient> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch (e) {
      throw new EnrollmentError('ERR_CSR_INVALID', `the CSR could not be parsed: ${(e as Error).message}`);
    }
    if (!(await csr.verify())) throw new EnrollmentError('ERR_CSR_SIGNATURE', 'the CSR signature does not verify');
    if (!Buffer.from(csr.publicKey.rawData).equals(announcedPublicKey)) throw new EnrollmentError('ERR_CSR_KEY_MISMATCH', 'the CSR public key differs from the announced one');
    const alg = csr.publicKey.algorithm as EcKeyAlgorithm;
    if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') throw new EnrollmentError('ERR_CSR_KEY_TYPE', 'connector keys must be ECDSA P-256');
    const now = Date.now();
    // whole seconds, as the certificate encodes it: the hub closes channels at this time
    const notAfter = new Date(Math.floor((now + lifetimeMs) / 1000) * 1000);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=${id}, OU=${group}`,
      issuer: this.cert.subject,
      notBefore: new Date(now - CERT_BACKDATE_MS),
      notAfter,
      publicKey: csr.publicKey,
      signingKey: this.signingKey,
      signingAlgorithm: SIGN_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      ],
    });
    return { id, group, certPem: cert.toString('pem') + '\n', notAfter };
  }

  /** The hub's TLS server certificate, for the names connectors dial. */
  async issueServer(names: string[], lifetimeMs = SERVER_CERT_LIFETIME_MS): Promise<{ keyPem: string; certPem: string; notAfter: Date }> {
    const kp = await generateKeyPair();
    const now = Date.now();
    const notAfter = new Date(Math.floor((now + lifetimeMs) / 1000) * 1000);
    const sans = [...new Set(names)].map((n) => (/^[0-9.]+$/.test(n) || n.includes(':') ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: 'CN=drawbridge connector hub',
      issuer: this.cert.subject,
      notBefore: new Date(now - CERT_BACKDATE_MS),
      notAfter,
      publicKey: kp.keys.publicKey,
      signingKey: this.signingKey,
      signingAlgorithm: SIGN_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(sans),
      ],
    });
    return { keyPem: kp.keyPem, certPem: cert.toString('pem') + '\n' + this.certPem, notAfter };
  }
}

/** The certificate names `ca` as its issuer and carries its signature (enrollment and renewal answers). */
export function issuedBy(cert: NodeX509, ca: NodeX509): boolean {
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

/** OpenSSL's reason without its error-code prefix ("error:1E08010C:DECODER routines::unsupported" -> "DECODER routines::unsupported"), first line only */
export function opensslReason(e: unknown): string {
  const message = String((e as Error)?.message ?? e);
  return message.replace(/^error:[0-9A-F]+:/, '').split('\n')[0]!;
}

/** lstat, not exists: a symlink to a secret mount that is not mounted is there, and must not be replaced */
function present(file: string): boolean {
  try {
    lstatSync(file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

function randomSerial(): string {
  const b = randomBytes(16);
  b[0] &= 0x7f; // positive
  return b.toString('hex');
}
