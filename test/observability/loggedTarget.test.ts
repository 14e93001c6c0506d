import assert from 'node:assert/strict';
import { loggedTarget } from '../../src/observability/loggedTarget.js';

describe('observability: the request target as logs keep it', () => {
  it('keeps the path, drops ;parameters and every query value', () => {
    assert.deepEqual(loggedTarget('/a/b'), { path: '/a/b' });
    assert.deepEqual(loggedTarget('/a/b?'), { path: '/a/b', query: '' });
    assert.deepEqual(loggedTarget('/.drawbridge/callback?code=abc&state=def&iss=https%3A%2F%2Fidp'), { path: '/.drawbridge/callback', query: 'code&state&iss' });
    assert.deepEqual(loggedTarget('/x/page.jsp;jsessionid=ABC?x=1'), { path: '/x/page.jsp', query: 'x' });
    assert.deepEqual(loggedTarget('/ws?access_token=eyJ.eyJ.sig'), { path: '/ws', query: 'access_token' });
    assert.deepEqual(loggedTarget(undefined), { path: '' });
    assert.deepEqual(loggedTarget('/download?SIGNED-TOKEN-VALUE&x=1'), { path: '/download', query: '-&x' }, 'a part without = is a value: not written');
  });

  it('bounds what a query of thousands of names can add to a line', () => {
    const t = loggedTarget(`/x?${'n&'.repeat(5000)}`);
    assert.ok(t.query!.length <= 515, `${t.query!.length}`);
  });
});
