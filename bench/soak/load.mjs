// The soak's client actions, shared by soak.mjs and burst.mjs.
import http from 'node:http';
import net from 'node:net';
import WebSocket from 'ws';

export function makeActions({ gwPort, good, forged }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  function req(host, path, { method = 'GET', headers = {}, body, abortAfterReqBytes, abortAfterResBytes, stopReadingMs, timeout = 30_000 } = {}) {
    return new Promise((resolveP) => {
      const fresh = abortAfterReqBytes !== undefined || abortAfterResBytes !== undefined || stopReadingMs !== undefined;
      const r = http.request({ host: '127.0.0.1', port: gwPort, path, method, headers: { host: host, ...headers }, agent: fresh ? false : agent });
      const done = (x) => { clearTimeout(timer); resolveP(x); };
      const timer = setTimeout(() => { r.destroy(); done('timeout'); }, timeout);
      r.on('error', () => done('error'));
      r.on('response', (res) => {
        let got = 0;
        if (stopReadingMs !== undefined) {
          res.pause();
          setTimeout(() => { r.destroy(); done('stopped'); }, stopReadingMs);
          return;
        }
        res.on('data', (c) => {
          got += c.length;
          if (abortAfterResBytes !== undefined && got >= abortAfterResBytes) { r.destroy(); done('aborted-res'); }
        });
        res.on('end', () => done(res.statusCode));
        res.on('error', () => done('res-error'));
      });
      if (abortAfterReqBytes !== undefined) {
        r.write(Buffer.alloc(abortAfterReqBytes, 1));
        setTimeout(() => { r.destroy(); done('aborted-req'); }, 50 + Math.random() * 300);
        return;
      }
      r.end(body);
    });
  }
  function raw(bytes, waitMs = 300) {
    return new Promise((resolveP) => {
      const s = net.connect(gwPort, '127.0.0.1', () => s.write(bytes));
      s.on('error', () => {});
      s.resume();
      setTimeout(() => { s.destroy(); resolveP(); }, waitMs);
    });
  }
  function ws(host, { closeFrame }) {
    return new Promise((resolveP) => {
      const w = new WebSocket(`ws://127.0.0.1:${gwPort}/ws`, { headers: { host } });
      const t = setTimeout(() => { w.terminate(); resolveP('timeout'); }, 10_000);
      w.on('error', () => { clearTimeout(t); resolveP('error'); });
      w.on('open', () => w.send('hello ' + Math.random()));
      w.on('message', () => {
        clearTimeout(t);
        if (closeFrame) w.close(1000);
        else w._socket?.destroy(); // gone without a close frame
        resolveP('ok');
      });
    });
  }
  const MiB = Buffer.alloc(1 << 20, 3);
  const hosts = ['direct.localhost', 'tun.localhost'];
  const pick = (a) => a[Math.floor(Math.random() * a.length)];
  const actions = [
    ['get', 20, () => req(pick(hosts), '/x?i=1')],
    ['post', 8, () => req(pick(hosts), '/post', { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } })],
    ['post-1MiB', 4, () => req(pick(hosts), '/up', { method: 'POST', body: MiB, headers: { 'content-type': 'application/octet-stream' } })],
    ['get-1MiB', 4, () => req(pick(hosts), '/big?bytes=1048576')],
    ['abort-mid-request', 4, () => req(pick(hosts), '/up', { method: 'POST', headers: { 'content-length': String(4 << 20) }, abortAfterReqBytes: 200_000 })],
    ['abort-mid-response', 4, () => req(pick(hosts), '/big?bytes=8388608', { abortAfterResBytes: 100_000 })],
    ['abort-waiting', 3, () => req(pick(hosts), '/slow?ms=1500', { timeout: 300 })],
    ['slow-reader', 2, () => req(pick(hosts), '/big?bytes=8388608', { stopReadingMs: 3000 })],
    ['ws-drop', 4, () => ws('ws.localhost', { closeFrame: false })],
    ['ws-close', 2, () => ws('ws.localhost', { closeFrame: true })],
    ['bearer-ok', 4, () => req('api.localhost', '/me', { headers: { authorization: `Bearer ${good}` } })],
    ['bearer-bad', 3, () => req('api.localhost', '/me', { headers: { authorization: `Bearer ${forged}` } })],
    ['delete-blocked', 1, () => req('tun.localhost', '/x', { method: 'DELETE' })],
    ['host-404', 2, () => req('nope.localhost', '/')],
    ['bad-framing', 1, () => raw('POST / HTTP/1.1\r\nHost: tun.localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')],
    ['bad-path', 1, () => raw('GET /a/%2e%2e/%2e%2e/etc HTTP/1.1\r\nHost: tun.localhost\r\n\r\n')],
    ['garbage', 1, () => raw('\x16\x03\x01garbage\r\n\r\n')],
    ['half-head', 1, () => raw('GET / HTTP/1.1\r\nHost: tun.lo', 500)],
  ];
  return { actions, agent };
}
