/**
 * Error responses in Entra application proxy's manner: browsers get a page
 * that says the corporate app can't be accessed, with a reason safe to show
 * and the correlation id; API clients get RFC 9457 problem+json.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import { CORRELATION_HEADER } from './headers.js';

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

export function wantsJson(headers: IncomingHttpHeaders): boolean {
  const accept = headers.accept;
  if (!accept) return false;
  if (accept.includes('application/json') || accept.includes('+json')) {
    const html = accept.indexOf('text/html');
    return html < 0 || accept.indexOf('json') < html;
  }
  return false;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export interface ErrorInfo {
  status: number;
  /** safe to show to the user */
  reason: string;
  correlationId: string;
  app?: string;
  headers?: Readonly<Record<string, string | string[]>>;
  /** what the user can do next, as a link on this site (a path): the page shows it, problem+json has it as `next` */
  next?: NextStep;
}

export interface NextStep {
  href: string;
  label: string;
}

export function sendError(res: ServerResponse, reqHeaders: IncomingHttpHeaders, info: ErrorInfo): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const title = titleOf(info.status);
  let body: string;
  let type: string;
  if (wantsJson(reqHeaders)) {
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
${next ? `<p><a href="${escapeHtml(next.href)}">${escapeHtml(next.label)}</a></p>\n` : ''}<dl><dt>Correlation ID</dt><dd><code>${escapeHtml(correlationId)}</code></dd><dt>Timestamp</dt><dd>${new Date().toISOString()}</dd></dl>
<p>If the problem persists, give the correlation ID to your administrator.</p>
</main></body></html>
`;
}
