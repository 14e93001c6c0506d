/**
 * What is wrong with a stage's decision, if anything. Third-party stages are
 * JavaScript as often as TypeScript, so nothing guarantees the shape the
 * contract declares; the edge checks each decision before acting on it, and a
 * malformed one fails that request (500, naming the stage) instead of
 * throwing inside the response machinery, where it would take the process
 * down or leave the client without an answer.
 */
import { validateHeaderName, validateHeaderValue } from 'node:http';
import { CORRELATION_HEADER, firstOwnedName, GATEWAY_FRAMED, HOP_BY_HOP } from '../gateway/headers.js';
import { CONTINUE } from './stage.js';

const KINDS = new Set(['continue', 'deny', 'redirect', 'respond']);

function statusProblem(status: unknown, min: number, what: string): string | undefined {
  if (!Number.isInteger(status) || (status as number) < min || (status as number) > 599) return `${what} status must be an integer from ${min} to 599 (got ${String(status)})`;
  return undefined;
}

function reasonsProblem(reasons: unknown, required: boolean): string | undefined {
  if (reasons === undefined && !required) return undefined;
  if (!Array.isArray(reasons) || reasons.some((r) => typeof r !== 'string')) return 'reasons must be an array of strings';
  return undefined;
}

function headersProblem(headers: unknown, what: string): string | undefined {
  if (headers === undefined) return undefined;
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) return `${what} must be an object of header names to values`;
  // Run for every decision that sets headers (the forwarded-headers stage's, on every request):
  // no entry arrays, no wrapping of single values.
  const h = headers as Record<string, unknown>;
  for (const name in h) {
    const value = h[name];
    try {
      validateHeaderName(name);
      if (Array.isArray(value)) for (const v of value) checkValue(name, v);
      else checkValue(name, value);
    } catch (e) {
      return `${what}: ${(e as Error).message}`;
    }
  }
  return undefined;
}

function checkValue(name: string, v: unknown): void {
  if (typeof v !== 'string') throw new TypeError(`the value of ${JSON.stringify(name)} is not a string`);
  validateHeaderValue(name, v);
}

function gatewayFramedProblem(headers: unknown): string | undefined {
  const name = headers && typeof headers === 'object' ? firstOwnedName(headers, (n) => GATEWAY_FRAMED.has(n)) : undefined;
  return name === undefined ? undefined : `setHeaders: ${name} is the gateway's to set (message framing, connection or routing), not a stage's`;
}

/**
 * Response headers of a stage's own answer that the gateway sets: a wrong Content-Length left the
 * rest of the body to be read as the start of the next response on the connection, and a stage's
 * correlation id replaced the one the log and the error page name.
 */
const ANSWER_OWNED = new Set([...HOP_BY_HOP, 'content-length', CORRELATION_HEADER]);

function answerFramingProblem(headers: unknown): string | undefined {
  const name = headers && typeof headers === 'object' ? firstOwnedName(headers, (n) => ANSWER_OWNED.has(n)) : undefined;
  return name === undefined ? undefined : `headers: ${name} is the gateway's to set on an answer, not a stage's`;
}

/** An identity the headers, the assertion and the audit trail will name: it must be one they can. */
function identityProblem(id: unknown): string | undefined {
  if (id === undefined) return undefined;
  if (id === null || typeof id !== 'object') return 'identity must be an object';
  const i = id as Record<string, unknown>;
  if (typeof i.user !== 'string' || i.user === '') return 'identity.user must be a non-empty string';
  if (!Array.isArray(i.groups) || i.groups.some((g) => typeof g !== 'string')) return 'identity.groups must be an array of strings';
  if (i.via !== 'session' && i.via !== 'bearer') return 'identity.via must be "session" or "bearer"';
  if (i.claims === null || typeof i.claims !== 'object' || Array.isArray(i.claims)) return 'identity.claims must be an object';
  return undefined;
}

export function decisionProblem(d: unknown): string | undefined {
  if (d === CONTINUE) return undefined;
  if (d === null || typeof d !== 'object') return `the decision is ${d === null ? 'null' : typeof d}, not an object`;
  const kind = (d as { kind?: unknown }).kind;
  if (typeof kind !== 'string' || !KINDS.has(kind)) return `unknown decision kind ${JSON.stringify(kind) ?? 'undefined'}`;
  const x = d as Record<string, unknown>;
  switch (kind) {
    case 'continue':
      return reasonsProblem(x.reasons, false) ?? headersProblem(x.setHeaders, 'setHeaders') ?? gatewayFramedProblem(x.setHeaders) ?? identityProblem(x.identity);
    case 'deny':
      return statusProblem(x.status, 400, 'a deny') ?? reasonsProblem(x.reasons, true) ?? headersProblem(x.headers, 'headers') ?? answerFramingProblem(x.headers) ?? (x.publicReason !== undefined && typeof x.publicReason !== 'string' ? 'publicReason must be a string' : undefined);
    case 'redirect':
      return (
        (typeof x.location !== 'string' ? 'a redirect needs a location string' : headersProblem({ location: x.location }, 'location')) ??
        (x.status !== undefined && x.status !== 302 && x.status !== 303 && x.status !== 307 ? `a redirect status must be 302, 303 or 307 (got ${String(x.status)})` : undefined) ??
        reasonsProblem(x.reasons, false) ??
        headersProblem(x.headers, 'headers') ??
        answerFramingProblem(x.headers)
      );
    default:
      return (
        statusProblem(x.status, 200, 'a respond') ??
        reasonsProblem(x.reasons, false) ??
        headersProblem(x.headers, 'headers') ??
        answerFramingProblem(x.headers) ??
        (x.body !== undefined && typeof x.body !== 'string' && !Buffer.isBuffer(x.body) ? 'a respond body must be a string or a Buffer' : undefined)
      );
  }
}
