/**
 * WebDAV's second path. COPY and MOVE (RFC 4918 10.3) act on the resource their
 * `Destination` header names as well as on the request target, so that path meets
 * the same rules as the target before anything is forwarded: normalized the same
 * way, routed to the same app on the same host, allowed by the app's access stages,
 * and sent to the app in its internal form. Checked on whatever method carries the
 * header: an app decides for itself which methods read it.
 */
import type { CompiledApp } from '../pipeline/generation.js';
import { isPendingDecision, type Decision, type RequestContext, type Stage } from '../pipeline/stage.js';
import { normalizeTarget } from './normalize.js';
import { hostnameOf, RESERVED_PREFIXES, type Router } from './router.js';

/** A Destination that routes to the request's own app, in the normalized form rules see. */
export interface Destination {
  readonly path: string;
  /** the last segment's parameters (`;x`), forwarded after the path as for the request target */
  readonly params: string;
  readonly search: string;
}
export type CheckedDestination = ({ ok: true } & Destination) | { ok: false; reason: string };

/**
 * Reads a Destination header (an absolute URI, or an absolute path on the request's
 * host) for a request to `app` on `host`. Refused when it names another host or app,
 * or a path that would be refused as a request target.
 */
export function checkDestination(rawHeaders: readonly string[], value: string, host: string, app: CompiledApp, router: Router<CompiledApp>): CheckedDestination {
  // Node joins repeated unknown headers with ", ", and a comma may sit in a path: two would be read as one.
  if (headerCount(rawHeaders, 'destination') > 1) return { ok: false, reason: 'more than one Destination header' };
  // Bytes beyond ASCII arrive as latin1 characters; encoded byte by byte they become the
  // percent-encoded UTF-8 that config paths are written in, so a raw "é" meets rules on "%C3%A9".
  const v = value.trim().replace(/[\x80-\xff]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  if (v === '') return { ok: false, reason: 'empty Destination header' };
  let target: string;
  let destHost: string | undefined = host;
  if (v.startsWith('/')) {
    if (v.startsWith('//')) return { ok: false, reason: 'Destination is a scheme-relative URL' };
    target = v;
  } else {
    const m = /^(https?):\/\/([^/?#]*)(.*)$/i.exec(v);
    if (!m) return { ok: false, reason: 'Destination is neither an http(s) URL nor an absolute path' };
    if (m[2]!.includes('@')) return { ok: false, reason: 'Destination has user information' };
    destHost = hostnameOf(m[2]);
    if (!destHost) return { ok: false, reason: 'Destination has an invalid host' };
    target = m[3]!.startsWith('/') ? m[3]! : '/' + m[3]!;
  }
  // The port is not compared: routing ignores it for the request target too.
  if (destHost !== host) return { ok: false, reason: 'Destination is on another host' };
  const n = normalizeTarget(target);
  if (!n.ok) return { ok: false, reason: `Destination path: ${n.reason}` };
  if (RESERVED_PREFIXES.some((p) => n.path.startsWith(p))) return { ok: false, reason: 'Destination is a path the gateway owns' };
  if (router.match(host, n.path)?.target !== app) return { ok: false, reason: "Destination is outside this app's address" };
  return { ok: true, path: n.path, params: n.params, search: n.search };
}

/** A normalized path (with its last segment's parameters and query) as the app sees it: external prefix to internal prefix. */
export function internalTarget(app: CompiledApp, path: string, params: string, search: string): string {
  const rest = path.length >= app.externalPrefix.length ? path.slice(app.externalPrefix.length) : undefined;
  return (rest === undefined ? app.internalPrefix.slice(0, -1) || '/' : app.internalPrefix + rest) + params + search;
}

/** The Destination the app is sent: its own scheme and host, the path mapped like the request target. */
export function internalDestination(app: CompiledApp, d: Destination): string {
  return app.internalUrl.origin + internalTarget(app, d.path, d.params, d.search);
}

const wrapped = new WeakMap<CompiledApp, readonly Stage[]>();

/**
 * The app's access stages, to run on the request as if its target were the Destination.
 * Their reasons name the Destination (the log and audit trail show which path was refused);
 * what they would set for the app (identity, headers) is dropped, since the request's own
 * pass set those already.
 */
export function destinationStages(app: CompiledApp): readonly Stage[] {
  let stages = wrapped.get(app);
  if (stages) return stages;
  stages = Object.freeze(
    app.stages
      .filter((s) => s.kind === 'access')
      .map((s): Stage => ({
        name: `${s.name} (Destination)`,
        kind: s.kind,
        run: (ctx) => {
          const d = s.run(ctx);
          return isPendingDecision(d) ? d.then((r) => forDestination(r, ctx)) : forDestination(d, ctx);
        },
      })),
  );
  wrapped.set(app, stages);
  return stages;
}

function forDestination(d: Decision, ctx: RequestContext): Decision {
  if (d === null || typeof d !== 'object') return d; // the edge reports a malformed decision as it is
  const reasons = Array.isArray(d.reasons) ? d.reasons.map((r) => `Destination ${ctx.path}: ${r}`) : undefined;
  switch (d.kind) {
    case 'continue':
      return reasons ? { kind: 'continue', reasons } : { kind: 'continue' };
    case 'deny': {
      // No step-up: the sign-in redirect returns a browser to the path it was checked on, and a
      // browser only navigates with GET, which acts on no Destination; the client gets the 401 as it is.
      const { stepUp: _, ...deny } = d;
      return { ...deny, reasons: reasons ?? [] };
    }
    case 'redirect':
    case 'respond':
      // a client cannot be sent somewhere for a header: the destination is simply not allowed
      return { kind: 'deny', status: 403, reasons: [...(reasons ?? []), `Destination ${ctx.path}: stage answered ${d.kind}`], publicReason: 'The Destination of this request is not allowed.' };
    default:
      return d;
  }
}

/** How many times a header appears (lower-case `name`). */
export function headerCount(raw: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === name.length && raw[i]!.toLowerCase() === name) n++;
  return n;
}
