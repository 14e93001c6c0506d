/**
 * Error responses in Entra application proxy's manner: browsers get a page
 * that says the corporate app can't be accessed, with a reason safe to show
 * and the correlation id; API clients get RFC 9457 problem+json.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import { CORRELATION_HEADER } from './headers.js';
import { withdrawHead } from './heldHead.js';

/** Entra's wording for the statuses users see most. */
const TITLES: Record<number, string> = {
  400: 'Bad request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not found',
  502: 'Bad gateway',
  503: 'Service unavailable',
  504: 'Gateway time-out',
};

export function titleOf(status: number): string {
  return TITLES[status] ?? STATUS_CODES[status] ?? 'Error';
}

/**
 * Whether the client asked for JSON rather than a page (RFC 9110 12.5.1): a JSON type
 * (`application/json`, `application/problem+json`, any `+json`) weighted more than `text/html`,
 * whose weight is that of the most specific range naming it (`text/html`, `text/*`, `*\/*`).
 * `q=0` is "not acceptable". At the same weight a JSON type the client named wins over HTML
 * reached only through a wildcard: `application/json, text/plain, *\/*` (axios) is an API client.
 */
export function wantsJson(headers: IncomingHttpHeaders): boolean {
  const accept = headers.accept;
  // A bearer token is an API client's (a browser's navigation never carries one): without HTML
  // asked for by name it gets JSON, as its 401s already were. curl's default `*/*` got the 403
  // of an unassigned user as a page, where a script reads the problem's fields.
  const apiClient = /^bearer\s/i.test(String(headers.authorization ?? ''));
  if (!accept) return apiClient;
  let json: number | undefined;
  const html: Record<string, number> = {};
  for (const { type, q } of mediaRanges(accept)) {
    if (type === 'application/json' || /^[^/]+\/[^/]+\+json$/.test(type)) json = Math.max(json ?? 0, q);
    else if (type === 'text/html' || type === 'text/*' || type === '*/*') html[type] = Math.max(html[type] ?? 0, q);
  }
  const named = html['text/html'];
  const page = named ?? html['text/*'] ?? html['*/*'] ?? 0;
  if (json === undefined) return apiClient && named === undefined && html['text/*'] === undefined;
  return json > page || (json > 0 && json === page && named === undefined);
}

/** An Accept header's media ranges, lower-cased, with their weights; a range whose weight is not a number is left out. */
function mediaRanges(accept: string): { type: string; q: number }[] {
  return accept.split(',').flatMap((part) => {
    const [range, ...params] = part.split(';');
    let q = 1;
    for (const p of params) {
      const eq = p.indexOf('=');
      if (eq < 0 || p.slice(0, eq).trim().toLowerCase() !== 'q') continue;
      q = Number(p.slice(eq + 1).trim());
      break;
    }
    return Number.isNaN(q) ? [] : [{ type: range!.trim().toLowerCase(), q: Math.min(Math.max(q, 0), 1) }];
  });
}

export const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export interface ErrorInfo {
  status: number;
  /** safe to show to the user */
  reason: string;
  correlationId: string;
  app?: string;
  headers?: Readonly<Record<string, string | string[]>>;
  /** what the user can do next, as a link on this site (a path): the page shows it, problem+json has it as `next` */
  next?: NextStep;
  /** the form, when the caller knows the kind of client better than its Accept says (clientKind.ts) */
  as?: 'page' | 'problem';
}

export interface NextStep {
  href: string;
  label: string;
  /** the link opens a window of its own: a sign-in link on a page shown in a frame, where sign-in cannot happen (identity/framedSignIn.ts) */
  newWindow?: boolean;
}

export function sendError(res: ServerResponse, reqHeaders: IncomingHttpHeaders, info: ErrorInfo): void {
  if (!withdrawHead(res)) {
    res.destroy();
    return;
  }
  const title = titleOf(info.status);
  let body: string;
  let type: string;
  if (info.as ? info.as === 'problem' : wantsJson(reqHeaders)) {
    type = 'application/problem+json';
    body = JSON.stringify({ type: 'about:blank', title, status: info.status, detail: info.reason, correlationId: info.correlationId, ...(info.app ? { app: info.app } : {}), ...(info.next ? { next: info.next.href } : {}) });
  } else {
    type = 'text/html; charset=utf-8';
    body = renderPage(info.status, title, info.reason, info.correlationId, info.next);
  }
  res.statusCode = info.status;
  for (const [k, v] of Object.entries(info.headers ?? {})) res.setHeader(k, v);
  res.setHeader('content-type', type);
  res.setHeader('content-length', Buffer.byteLength(body));
  res.setHeader('cache-control', 'no-store');
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader(CORRELATION_HEADER, info.correlationId);
  res.end(body);
}

export function renderPage(status: number, title: string, reason: string, correlationId: string, next?: NextStep): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${status} ${escapeHtml(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f3f2f1;color:#201f1e}main{max-width:36rem;margin:12vh auto;background:#fff;padding:2rem 2.5rem;border-radius:4px;box-shadow:0 1px 4px #0002}h1{font-size:1.4rem;margin:0 0 1rem}code{font-size:.9rem}dl{display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem;color:#605e5c;font-size:.9rem}</style>
</head><body><main>
<h1>This corporate app can't be accessed</h1>
<p><strong>${status} ${escapeHtml(title)}</strong>: ${escapeHtml(reason)}</p>
${next ? `<p><a href="${escapeHtml(next.href)}"${next.newWindow ? ' target="_blank" rel="noopener"' : ''}>${escapeHtml(next.label)}</a></p>\n` : ''}<dl><dt>Correlation ID</dt><dd><code>${escapeHtml(correlationId)}</code></dd><dt>Timestamp</dt><dd>${new Date().toISOString()}</dd></dl>
<p>If the problem persists, give the correlation ID to your administrator.</p>
</main></body></html>
`;
}
