/**
 * The request target as the request log and the audit trail keep it. Query values and `;`
 * path parameters carry secrets often enough (OAuth codes at the sign-in callback,
 * `access_token=` on WebSocket URLs, signed-URL signatures, `;jsessionid=`) that neither is
 * written down: the path goes in without its parameters, the query as its parameter names only,
 * and a fragment not at all.
 */
export interface LoggedTarget {
  path: string;
  /** the query's parameter names, `&`-joined, in order (`code&state`; `-` for a part without a value or a name: `?<token>`, `?x=`); absent without a query */
  query?: string;
}

const MAX_QUERY_NAMES = 512;
/** longer than this, a query "name" is taken for a value (a token) */
const MAX_NAME_LENGTH = 64;

export function loggedTarget(url: string | undefined): LoggedTarget {
  if (!url) return { path: '' };
  // A fragment is never part of a request target, but a broken client sends the one an
  // implicit-flow redirect carried (`#access_token=`): everything after `#` is left out.
  const hash = url.indexOf('#');
  const target = hash >= 0 ? url.slice(0, hash) : url;
  const q = target.indexOf('?');
  const beforeQuery = pathOnly(q >= 0 ? target.slice(0, q) : target);
  const semi = beforeQuery.indexOf(';');
  const path = semi >= 0 ? beforeQuery.slice(0, semi) : beforeQuery;
  if (q < 0) return { path };
  const names = target
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      // `?<token>` (a signed link) is a value without a name: it is not written either. Nor is
      // one in base64 with its padding (`?dG9r...MQ==`), which reads as a name with an empty
      // value, nor a "name" longer than any parameter's.
      const eq = pair.indexOf('=');
      if (eq < 0) return pair === '' ? '' : '-';
      return /^=*$/.test(pair.slice(eq)) || eq > MAX_NAME_LENGTH ? '-' : pair.slice(0, eq);
    })
    .join('&');
  return { path, query: names.length > MAX_QUERY_NAMES ? `${names.slice(0, MAX_QUERY_NAMES)}...` : names };
}

/**
 * The path of a target in absolute form (`http://alice:password@host/x`, refused by the edge but
 * logged), without the scheme, host and userinfo, which carries a password. The userinfo ends at
 * the last `@`: a broken client leaves a `/` in a password unencoded.
 */
function pathOnly(target: string): string {
  if (target.startsWith('/') || target === '*') return target;
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(target);
  const at = target.lastIndexOf('@');
  if (!scheme && at < 0) return target;
  const rest = target.slice(Math.max(at + 1, scheme ? scheme[0].length : 0));
  const slash = rest.indexOf('/');
  return slash >= 0 ? rest.slice(slash) : '';
}
