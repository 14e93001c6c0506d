/**
 * The request target as the request log and the audit trail keep it. Query values and `;`
 * path parameters carry secrets often enough (OAuth codes at the sign-in callback,
 * `access_token=` on WebSocket URLs, signed-URL signatures, `;jsessionid=`) that neither is
 * written down: the path goes in without its parameters, the query as its parameter names only.
 */
export interface LoggedTarget {
  path: string;
  /** the query's parameter names, `&`-joined, in order (`code&state`; `-` for a part without `=`); absent without a query */
  query?: string;
}

const MAX_QUERY_NAMES = 512;

export function loggedTarget(url: string | undefined): LoggedTarget {
  if (!url) return { path: '' };
  const q = url.indexOf('?');
  const beforeQuery = q >= 0 ? url.slice(0, q) : url;
  const semi = beforeQuery.indexOf(';');
  const path = semi >= 0 ? beforeQuery.slice(0, semi) : beforeQuery;
  if (q < 0) return { path };
  const names = url
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      // `?<token>` (a signed link) is a value without a name: it is not written either.
      const eq = pair.indexOf('=');
      return eq >= 0 ? pair.slice(0, eq) : pair === '' ? '' : '-';
    })
    .join('&');
  return { path, query: names.length > MAX_QUERY_NAMES ? `${names.slice(0, MAX_QUERY_NAMES)}...` : names };
}
