/** An app's interim answers (1xx) and what a client sees of them, for the direct and the tunnel upstream tests. */
import http from 'node:http';

/** An app that answers every request with 102, then 103 with links and hop-by-hop fields, then 200. */
export const INTERIM_ANSWER =
  'HTTP/1.1 102 Processing\r\n\r\n' +
  'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload; as=style, </b.js>; rel=preload; as=script\r\nLink: </c.woff2>; rel=preload; as=font; crossorigin\r\nX-Trace: t1\r\nConnection: x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n' +
  'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone';

/** What a client sees of the interim answers to one GET, and the final answer. */
export function interimAnswers(port: number, host: string, path = '/work'): Promise<{ interim: { status: number; headers: http.IncomingHttpHeaders }[]; status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const interim: { status: number; headers: http.IncomingHttpHeaders }[] = [];
    const r = http.get({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ interim, status: res.statusCode!, headers: res.headers, body }));
    });
    r.on('information', (i) => interim.push({ status: i.statusCode, headers: i.headers }));
    r.on('error', reject);
  });
}

export const EXPECTED_INTERIM = [
  { status: 102, headers: {} },
  { status: 103, headers: { link: '</a.css>; rel=preload; as=style, </b.js>; rel=preload; as=script, </c.woff2>; rel=preload; as=font; crossorigin', 'x-trace': 't1' } },
];
