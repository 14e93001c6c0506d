/**
 * The demo's "internal" app: it shows what the gateway sent it (path,
 * forwarded headers, identity headers), and echoes WebSocket messages.
 */
import http from 'node:http';
import { WebSocketServer } from 'ws';

const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function createSampleApp(name = 'Sample internal app'): http.Server {
  const wss = new WebSocketServer({ noServer: true });
  wss.on('connection', (ws) => ws.on('message', (m, isBinary) => ws.send(m, { binary: isBinary })));
  const server = http.createServer((req, res) => {
    const seen = { method: req.method, url: req.url, headers: req.headers };
    if (req.url?.startsWith('/api/')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(seen, null, 2));
    }
    // No X-Remote-User says nothing of the pre-auth mode: Payroll signs users in and sends none, and
    // "No signed-in user (passthrough)" there read as a sign-in that did not work.
    const user = req.headers['x-remote-user'];
    const rows = Object.entries(req.headers)
      .map(([k, v]) => `<tr><td><code>${escape(k)}</code></td><td><code>${escape(String(v))}</code></td></tr>`)
      .join('');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html><head><meta charset="utf-8"><title>${escape(name)}</title>
<style>body{font:15px system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}td{border-bottom:1px solid #ddd;padding:.2rem .6rem;vertical-align:top}</style></head>
<body><h1>${escape(name)}</h1>
<p id="who">${user ? `Signed in as <strong>${escape(String(user))}</strong>` : 'The gateway sent this app no identity headers (<code>X-Remote-User</code>): a passthrough app gets none, a sign-in app only those its <code>headers.identity</code> lists'}</p>
${user ? '<p><a href="/.drawbridge/me">What the gateway knows about you</a> · <a href="/.drawbridge/sign-out">Sign out</a></p>' : ''}
<p>This page runs on a private address. You reached it through Drawbridge at <code>${escape(req.url ?? '/')}</code>.</p>
<h2>What the gateway sent</h2><table>${rows}</table></body></html>`);
  });
  server.on('upgrade', (req, socket, head) => {
    if (req.url !== '/ws') return socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  server.keepAliveTimeout = 620_000;
  return server;
}
