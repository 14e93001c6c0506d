/**
 * Error answers are pages for browsers and problem+json for clients that ask for JSON, chosen
 * by the weights of Accept (RFC 9110 12.5.1), not by where `json` stands in it.
 */
import assert from 'node:assert/strict';
import { request, startGateway, type TestGateway } from '../support/harness.js';

const PAGE = 'text/html; charset=utf-8';
const JSON_ = 'application/problem+json';

describe('error pages: HTML or problem+json', function () {
  this.timeout(20_000);
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway(`gateway:
  publicUrl: http://gw.test
  listen: { http: 127.0.0.1:0 }
apps: []
`);
  });
  after(() => gw?.stop());

  const cases: [string | undefined, string, string][] = [
    [undefined, PAGE, 'no Accept'],
    ['text/html', PAGE, 'a browser'],
    ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', PAGE, 'what browsers send'],
    ['*/*', PAGE, 'anything'],
    ['text/plain', PAGE, 'neither'],
    ['application/json', JSON_, 'JSON'],
    ['Application/JSON; charset=utf-8', JSON_, 'JSON in another letter case, with a parameter'],
    ['application/problem+json', JSON_, 'problem+json'],
    ['application/vnd.api+json', JSON_, 'a +json type'],
    ['application/json, text/plain, */*', JSON_, 'what axios sends: JSON named, HTML only through */*'],
    ['text/html;q=0.1, application/json', JSON_, 'HTML listed first but weighted less'],
    ['application/json;q=0, text/html', PAGE, 'JSON not acceptable (q=0)'],
    ['application/json;q=0', PAGE, 'JSON not acceptable, alone'],
    ['application/json;q=0.1, text/html;q=0.9', PAGE, 'JSON first but weighted less'],
    ['text/*, application/json;q=0.5', PAGE, 'text/* weighted more'],
    ['application/json;q=0.5, */*', PAGE, 'anything weighted more than JSON'],
    ['application/json, text/html', PAGE, 'the same weight, HTML named: a page'],
    ['application/jsonx', PAGE, 'a type that only begins with json'],
    ['text/json-ish, application/jsonp', PAGE, 'other types that contain json'],
  ];
  // With a bearer token (an API client), JSON unless HTML is asked for by name or JSON refused
  const bearerCases: [string | undefined, string, string][] = [
    [undefined, JSON_, 'no Accept'],
    ['*/*', JSON_, "curl's default"],
    ['text/plain', JSON_, 'neither'],
    ['text/html', PAGE, 'HTML named'],
    ['text/*', PAGE, 'text/* named'],
    ['application/json;q=0, */*', PAGE, 'JSON not acceptable'],
  ];
  for (const [accept, type, what] of bearerCases) {
    it(`Authorization: Bearer, Accept ${accept === undefined ? '(none)' : JSON.stringify(accept)} (${what}): ${type === PAGE ? 'page' : 'problem+json'}`, async () => {
      const res = await request(`${gw.url}/`, { headers: { host: 'nothing.test', authorization: 'Bearer abc.def.ghi', ...(accept === undefined ? {} : { accept }) } });
      assert.equal(res.status, 404);
      assert.equal(res.headers['content-type'], type);
    });
  }
  // Basic credentials are a browser's as often as a script's: Accept alone decides
  it('Authorization: Basic with Accept */*: a page', async () => {
    const res = await request(`${gw.url}/`, { headers: { host: 'nothing.test', authorization: 'Basic Ym9iOnB3', accept: '*/*' } });
    assert.equal(res.headers['content-type'], PAGE);
  });
  for (const [accept, type, what] of cases) {
    it(`Accept ${accept === undefined ? '(none)' : JSON.stringify(accept)} (${what}): ${type === PAGE ? 'page' : 'problem+json'}`, async () => {
      const res = await request(`${gw.url}/`, { headers: { host: 'nothing.test', ...(accept === undefined ? {} : { accept }) } });
      assert.equal(res.status, 404);
      assert.equal(res.headers['content-type'], type);
      if (type === JSON_) assert.equal(res.json().correlationId, res.headers['x-correlation-id']);
      else assert.match(res.body, /This corporate app can't be accessed/);
    });
  }
});
