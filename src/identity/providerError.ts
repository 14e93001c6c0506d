/**
 * What the user is told when the provider answers the sign-in with an error
 * (RFC 6749 4.1.2.1, OpenID Connect Core 3.1.2.6) instead of a code: that the
 * identity provider is where it stopped, its error code, and what to do next,
 * as Entra's pages do ("a message indicating the source of the problem").
 *
 * Only a registered code is shown, from this fixed list; anything else is
 * `unknown_error`. The provider's `error_description` is never shown: it
 * arrives in the URL, which whoever sends the browser to the callback writes,
 * so it would put their words ("call this number") on a page under the
 * gateway's name. The log and the audit trail keep it for the administrator.
 */

export interface ProviderRefusal {
  status: 401 | 403 | 503;
  /** the provider's code when it is a registered one, else `unknown_error` */
  code: string;
  /** safe to show: names the provider as the source, the code, and what to do */
  reason: string;
  /** the provider asked to be tried later: answered like the gateway's own provider-outage page (503, Retry-After) */
  retryLater?: true;
}

type Wording = { status: ProviderRefusal['status']; says: string; todo: string; retry?: true };

const SIGN_IN_AGAIN = 'Sign in again.';
/** The gateway's request was wrong for this provider: signing in again meets the same refusal. */
const MISCONFIGURED: Wording = {
  status: 401,
  says: "refused this gateway's sign-in request",
  todo: "The gateway's registration at the provider does not match its configuration; give the correlation ID to your administrator.",
};

const KNOWN: Readonly<Record<string, Wording>> = {
  access_denied: {
    status: 403,
    says: 'refused the sign-in',
    todo: 'It was cancelled, or the provider does not let this account use this app. Sign in again, with another account if you have one; if you should have access, ask your administrator.',
  },
  temporarily_unavailable: { status: 503, says: 'cannot complete sign-ins right now', todo: 'Try again in a moment.', retry: true },
  server_error: { status: 503, says: 'had an error and could not complete the sign-in', todo: 'Try again in a moment.', retry: true },
  login_required: { status: 401, says: 'needs you to sign in at the provider', todo: SIGN_IN_AGAIN },
  interaction_required: { status: 401, says: 'needs you to complete a step at the provider (a second factor, terms to accept...)', todo: 'Sign in again to complete it.' },
  consent_required: { status: 401, says: 'needs consent for this app before it can sign you in', todo: "Sign in again to give it; if the provider asks for an administrator's consent, ask your administrator." },
  account_selection_required: { status: 401, says: 'needs you to choose an account', todo: 'Sign in again to choose one.' },
  invalid_request: MISCONFIGURED,
  unauthorized_client: MISCONFIGURED,
  unsupported_response_type: MISCONFIGURED,
  invalid_scope: MISCONFIGURED,
  invalid_request_uri: MISCONFIGURED,
  invalid_request_object: MISCONFIGURED,
  request_not_supported: MISCONFIGURED,
  request_uri_not_supported: MISCONFIGURED,
  registration_not_supported: MISCONFIGURED,
};

const UNKNOWN: Wording = { status: 401, says: 'could not complete the sign-in', todo: 'Sign in again; if this happens again, give the correlation ID to your administrator.' };

/** The answer to a provider's `error` at the callback; `providerHost` is the issuer's host (from the config). */
export function providerRefusal(error: string, providerHost: string): ProviderRefusal {
  const known = Object.hasOwn(KNOWN, error);
  const w = known ? KNOWN[error]! : UNKNOWN;
  const code = known ? error : 'unknown_error';
  return {
    status: w.status,
    code,
    reason: `The identity provider (${providerHost}) ${w.says}: error ${code}. ${w.todo}`,
    ...(w.retry ? { retryLater: true as const } : {}),
  };
}
