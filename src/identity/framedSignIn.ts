/**
 * A page of an app opened in a frame (an iframe of a dashboard, a portal, the app's own page)
 * when its session is missing or has ended. Sign-in cannot happen there: the provider's pages
 * are another site inside that frame, so its cookies are third-party (the embedded provider
 * answered "invalid_request", Entra's pages refuse to be framed at all), and the frame showed
 * the provider's error or nothing. Entra application proxy says the same: a framed app signs in
 * in a window of its own. The frame gets a page that says so, with the link that does it.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { escapeHtml as esc } from '../gateway/errorPages.js';
import { first } from './clientKind.js';

/** A navigation of a frame, as Chromium, Firefox and Safari say it (Sec-Fetch-Dest). */
export function isFrameNavigation(h: Readonly<IncomingHttpHeaders>): boolean {
  const dest = first(h['sec-fetch-dest']);
  return dest === 'iframe' || dest === 'frame';
}

/**
 * A frame's navigation that cannot sign in where it is. Only an app whose cookies are
 * SameSite=None (which needs https), as an operator sets for an app embedded in another site's
 * page, still signs in inside the frame, with a provider that lets its pages be framed
 * (loginState.ts gives that sign-in a login cookie the frame keeps). Every other frame gets the
 * page below.
 */
export function frameCannotSignIn(h: Readonly<IncomingHttpHeaders>, sameSite: 'lax' | 'strict' | 'none', protocol: 'http' | 'https'): boolean {
  return isFrameNavigation(h) && !(sameSite === 'none' && protocol === 'https');
}

/**
 * The frame is in a page of another site, which never gets a Lax or Strict session cookie even
 * once the user has signed in. Sec-Fetch-Site compares the frame with the page that navigated it,
 * the page the frame is in for every frame but one nested in a frame of a third site: there the
 * page offers "show it here again" where the cookie may still not come, which is no loop either.
 */
export function inAnotherSite(h: Readonly<IncomingHttpHeaders>): boolean {
  return first(h['sec-fetch-site']) === 'cross-site';
}

/**
 * The page shown in the frame. `target` is the framed page's own path: opened as a window of its
 * own it is a top-level navigation, which signs in as any other and comes back to it. Where the
 * frame will get the cookie afterwards, a second link shows the page in the frame again.
 */
export function framedSignInPage(o: { app: string; target: string; crossSite: boolean; correlationId: string; stepUp?: boolean }): string {
  const href = esc(o.target);
  const open = `<a href="${href}" target="_blank" rel="noopener">Open it in a new window</a>`;
  const why = o.stepUp ? `This page of ${esc(o.app)} needs a stronger or more recent sign-in` : `Your session for ${esc(o.app)} has ended or has not started`;
  const what = o.crossSite
    ? `<p>This frame is in a page of another site, where your browser does not send your sign-in to ${esc(o.app)}, and sign-in cannot happen inside a frame. ${open} to sign in and use it there.</p>`
    : `<p>${why}, and sign-in cannot happen inside a frame. ${open} to sign in, then <a href="${href}" target="_self">show it here again</a>.</p>`;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign-in required</title><style>body{font:16px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:32rem}</style></head><body><h1>Sign-in required</h1>${what}<p>Correlation ID: <code>${esc(o.correlationId)}</code></p></body></html>`;
}

/** The headers of a page that answers 401 with the way to sign in (this one, and the page for a form posted without a session). */
export function signInRequiredHeaders(app: string): Record<string, string> {
  return { 'www-authenticate': `Bearer realm="${app}"`, 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'" };
}
