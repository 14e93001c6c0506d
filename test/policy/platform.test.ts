import assert from 'node:assert/strict';
import { platformOf } from '../../src/policy/platform.js';

describe('device platform from the User-Agent', () => {
  const cases: [string, string | undefined, string][] = [
    ['Windows Chrome', 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36', 'windows'],
    ['macOS Safari', 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15', 'macos'],
    ['Linux Firefox', 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0', 'linux'],
    ['ChromeOS', 'Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 Chrome/131.0 Safari/537.36', 'linux'],
    ['Android (says Linux too)', 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36', 'android'],
    ['iPad (says Mac OS X too)', 'Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148', 'ios'],
    ['Windows Phone (says Android too)', 'Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1) Edge/15', 'other'],
    ['curl', 'curl/8.5.0', 'other'],
    ['none', undefined, 'other'],
  ];
  for (const [desc, ua, want] of cases) it(desc, () => assert.equal(platformOf(ua), want));
});
