/**
 * Broken configs through the real loader: each case asserts every error it
 * produces (position, key path, message), so both missing and noisy reports fail.
 */
import assert from 'node:assert/strict';
import * as x509 from '@peculiar/x509';
import { X509Certificate } from 'node:crypto';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfigFile } from '../../src/config/load.js';
import { generateKeyPair } from '../../src/connector/ca.js';
import { selfSignedCert } from '../support/certs.js';
import { tempDir } from '../support/harness.js';

const KCD_SHIM = resolve('plugins-examples/kcd-shim/index.js');

/** 3 lines: a valid gateway section with a plain http listener. */
const GW = `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
`;
/** 5 lines: GW plus identity and session, so preAuth oidc apps are valid. */
const OIDC = `${GW}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"] }
`;
/** A valid passthrough app as a list item (4 lines). */
const app = (name: string, host: string, extra = '') => `  - name: ${name}
    externalUrl: http://${host}/
    internalUrl: http://127.0.0.1:3001/
    preAuth: passthrough
${extra}`;

interface Expected {
  /** line:col */
  at: string;
  path: string;
  /** a substring of the message */
  message: string;
}
interface Case {
  description: string;
  yaml: string;
  errors: Expected[];
}

const cases: Case[] = [
  {
    description: 'unknown key with a did-you-mean',
    yaml: `gateway:
  publicUrl: http://localhost:8080
  listen:
    htp: 8080
apps: []
`,
    errors: [{ at: '4:5', path: 'gateway.listen.htp', message: 'unknown key "htp" (did you mean "http"?)' }],
  },
  {
    description: 'misspelt required top-level key: one did-you-mean, not also "missing apps"',
    yaml: `${GW}app:
${app('Hello', 'hello.localhost:8080')}`,
    errors: [{ at: '4:1', path: 'app', message: 'unknown key "app" (did you mean "apps"?)' }],
  },
  {
    description: 'misspelt required key in an app: one did-you-mean',
    yaml: `${GW}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalURL: http://127.0.0.1:3001/
    preAuth: passthrough
`,
    errors: [{ at: '7:5', path: 'apps[0].internalURL', message: 'unknown key "internalURL" (did you mean "internalUrl"?)' }],
  },
  {
    description: 'a key that is missing, not misspelt, is still reported missing',
    yaml: `${GW}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    preAuth: passthrough
    color: blue
`,
    errors: [
      { at: '5:5', path: 'apps[0]', message: 'missing required key "internalUrl"' },
      { at: '8:5', path: 'apps[0].color', message: 'unknown key "color"' },
    ],
  },
  {
    description: 'a value listed twice points at the second copy',
    yaml: `${OIDC}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    assignment: { groups: [finance, hr, finance] }
`,
    errors: [{ at: '10:41', path: 'apps[0].assignment.groups[2]', message: '"finance" is listed twice' }],
  },
  {
    description: 'an empty list where one entry is needed',
    yaml: `${GW}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s }
session: { secrets: [] }
apps: []
`,
    errors: [{ at: '5:21', path: 'session.secrets', message: 'must not be empty' }],
  },
  {
    description: 'YAML merge keys are refused with a reason',
    yaml: `${GW}apps:
  - &hello
    name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    preAuth: passthrough
  - <<: *hello
    name: Other
    externalUrl: http://other.localhost:8080/
`,
    errors: [
      { at: '10:5', path: 'apps[1]', message: 'missing required key "internalUrl"' },
      { at: '10:5', path: 'apps[1]["<<"]', message: 'YAML merge keys (<<) are not supported' },
      { at: '10:5', path: 'apps[1].preAuth', message: 'preAuth oidc needs the identity: section' },
      { at: '10:5', path: 'apps[1].preAuth', message: 'preAuth oidc needs the session: section' },
    ],
  },
  {
    description: 'wrong type: a string where a boolean belongs',
    yaml: `${GW}apps:
${app('Hello', 'hello.localhost:8080', '    websockets: yes please\n')}`,
    errors: [{ at: '9:17', path: 'apps[0].websockets', message: 'must be a boolean, not string "yes please"' }],
  },
  {
    description: 'websocketOrigins: an origin with a path, and a scheme other than http(s)',
    yaml: `${OIDC}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    websockets: true
    websocketOrigins: [https://dash.example.test/app, "https://ok.example.test", ftp://x.test]
`,
    errors: [
      { at: '11:24', path: 'apps[0].websocketOrigins[0]', message: 'must be an origin (scheme://host[:port], no path): write "https://dash.example.test"' },
      { at: '11:82', path: 'apps[0].websocketOrigins[2]', message: '"ftp://x.test" must be an http or https URL' },
    ],
  },
  {
    description: 'wrong type: apps as a mapping',
    yaml: `${GW}apps:
  name: Hello
`,
    errors: [{ at: '5:3', path: 'apps', message: 'must be a list, not a mapping' }],
  },
  {
    description: 'missing required key in an app',
    yaml: `${GW}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    preAuth: passthrough
`,
    errors: [{ at: '5:5', path: 'apps[0]', message: 'missing required key "internalUrl"' }],
  },
  {
    description: 'missing gateway.publicUrl',
    yaml: `gateway:
  listen: { http: 8080 }
apps: []
`,
    errors: [{ at: '1:1', path: 'gateway', message: 'missing required key "publicUrl"' }],
  },
  {
    description: 'bad duration',
    yaml: `${GW}identity:
  issuer: http://127.0.0.1:9000
  clientId: drawbridge
  clientSecret: s
  clockTolerance: 60 seconds
apps: []
`,
    errors: [{ at: '8:19', path: 'identity.clockTolerance', message: '"60 seconds" is not a duration (use e.g. 500ms, 90s, 15m, 8h, 30d or 1h30m: units from the largest down, each once)' }],
  },
  {
    description: 'a duration with a unit twice (a slip, not a sum)',
    yaml: `${GW}identity:
  issuer: http://127.0.0.1:9000
  clientId: drawbridge
  clientSecret: s
  clockTolerance: 1m1m
apps: []
`,
    errors: [{ at: '8:19', path: 'identity.clockTolerance', message: '"1m1m" is not a duration (use e.g. 500ms, 90s, 15m, 8h, 30d or 1h30m: units from the largest down, each once)' }],
  },
  {
    description: 'bad CIDR in trustedProxies',
    yaml: `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
  trustedProxies: [10.0.0.0/8, 10.0.0.0/33]
apps: []
`,
    errors: [{ at: '4:32', path: 'gateway.trustedProxies[1]', message: '"10.0.0.0/33" is not a valid CIDR range or address' }],
  },
  {
    description: 'bad CIDR in locations',
    yaml: `${GW}locations:
  corp-network:
    - 203.0.113.0/24
    - corp.example.test
apps: []
`,
    errors: [{ at: '7:7', path: 'locations.corp-network[1]', message: '"corp.example.test" is not a valid CIDR range or address' }],
  },
  {
    description: 'zero-padded IPv4 in locations (other parsers read it as octal: 010 is 8)',
    yaml: `${GW}locations:
  corp-network:
    - 010.000.000.000/8
    - 10.1.2.003
apps: []
`,
    errors: [
      { at: '6:7', path: 'locations.corp-network[0]', message: '"010.000.000.000/8" is not a valid CIDR range or address' },
      { at: '7:7', path: 'locations.corp-network[1]', message: '"10.1.2.003" is not a valid CIDR range or address' },
    ],
  },
  {
    description: 'a location name that only Object.prototype has',
    yaml: `${GW}locations:
  corp: [203.0.113.0/24]
policies:
  outside:
    when: { notLocations: [constructor] }
    grant: block
apps: []
`,
    errors: [{ at: '8:28', path: 'policies.outside.when.notLocations[0]', message: 'unknown location "constructor" (known: corp)' }],
  },
  {
    description: 'a policy name that only Object.prototype has',
    yaml: `${GW}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    preAuth: passthrough
    conditionalAccess: [toString]
`,
    errors: [{ at: '9:25', path: 'apps[0].conditionalAccess[0]', message: 'unknown policy "toString" (none defined)' }],
  },
  {
    description: 'bad URL',
    yaml: `${GW}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http//127.0.0.1:3001/
    preAuth: passthrough
`,
    errors: [{ at: '7:18', path: 'apps[0].internalUrl', message: '"http//127.0.0.1:3001/" is not a valid URL' }],
  },
  {
    description: 'internal URL that is not http or https',
    yaml: `${GW}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: ftp://files.corp.internal/
    preAuth: passthrough
`,
    errors: [{ at: '7:18', path: 'apps[0].internalUrl', message: 'must be an http or https URL' }],
  },
  {
    description: 'wildcard internalUrl',
    yaml: `${GW}apps:
  - name: Hello
    externalUrl: http://*.apps.localhost:8080/
    internalUrl: http://*.corp.internal/
    preAuth: passthrough
`,
    errors: [{ at: '7:18', path: 'apps[0].internalUrl', message: 'wildcard hosts are only allowed in externalUrl' }],
  },
  {
    description: 'an empty client secret (an empty ${file:} or ${env:} value)',
    yaml: `${GW}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: "" }
apps: []
`,
    errors: [{ at: '4:80', path: 'identity.clientSecret', message: 'is empty: every sign-in would be refused by the provider (leave the key out for a public client)' }],
  },
  {
    description: 'unknown connector group',
    yaml: `${GW}connectors: { listen: 8444 }
connectorGroups:
  default: {}
apps:
${app('Hello', 'hello.localhost:8080', '    connectorGroup: defualt\n')}`,
    errors: [{ at: '12:21', path: 'apps[0].connectorGroup', message: 'unknown connector group "defualt" (known: default)' }],
  },
  {
    description: 'unknown policy',
    yaml: `${GW}policies:
  block-all: { grant: block }
apps:
${app('Hello', 'hello.localhost:8080', '    conditionalAccess: [block-all, mfa]\n')}`,
    errors: [{ at: '11:36', path: 'apps[0].conditionalAccess[1]', message: 'unknown policy "mfa" (known: block-all)' }],
  },
  {
    description: 'unknown location',
    yaml: `${GW}locations:
  corp: [10.0.0.0/8]
policies:
  outside:
    when: { notLocations: [corp, home] }
    grant: block
apps: []
`,
    errors: [{ at: '8:34', path: 'policies.outside.when.notLocations[1]', message: 'unknown location "home" (known: corp)' }],
  },
  {
    description: 'unknown app in a policy',
    yaml: `${GW}policies:
  p:
    when: { apps: [Helo] }
    grant: block
apps:
${app('Hello', 'hello.localhost:8080')}`,
    errors: [{ at: '6:20', path: 'policies.p.when.apps[0]', message: 'unknown app "Helo"' }],
  },
  {
    description: 'policy path globs not in the normalized form requests are compared in (they would never match)',
    yaml: `${GW}policies:
  p:
    when: { paths: ["/%7Euser/**", "/docs/./old/**", "/a;x/**", "/ok/**"] }
    grant: block
apps:
${app('Hello', 'hello.localhost:8080')}`,
    errors: [
      { at: '6:21', path: 'policies.p.when.paths[0]', message: 'request paths are compared in normalized form, so "/%7Euser/**" would never match: write "/~user/**"' },
      { at: '6:36', path: 'policies.p.when.paths[1]', message: 'would never match: write "/docs/old/**"' },
      { at: '6:54', path: 'policies.p.when.paths[2]', message: 'no request path can match "/a;x/**"' },
    ],
  },
  {
    description: 'an externalUrl path not in normalized form (the app would never be routed to)',
    yaml: `${GW}apps:
  - name: Cafe
    externalUrl: http://app.localhost:8080/caf%c3%a9/
    internalUrl: http://127.0.0.1:3001/
    preAuth: passthrough
  - name: Tilde
    externalUrl: http://app.localhost:8080/%7Eadmin/
    internalUrl: http://127.0.0.1:3001/
    preAuth: passthrough
`,
    errors: [
      { at: '6:18', path: 'apps[0].externalUrl', message: 'so /caf%c3%a9/ would never match: write /caf%C3%A9/' },
      { at: '10:18', path: 'apps[1].externalUrl', message: 'so /%7Eadmin/ would never match: write /~admin/' },
    ],
  },
  {
    description: 'unknown plugin in sso.plugin',
    yaml: `${OIDC}apps:
  - name: Payroll
    externalUrl: http://payroll.localhost:8080/
    internalUrl: http://127.0.0.1:8000/
    sso: { plugin: kerberos }
`,
    errors: [{ at: '10:20', path: 'apps[0].sso.plugin', message: 'unknown plugin "kerberos"' }],
  },
  {
    description: 'a plugin of the wrong kind in sso.plugin',
    yaml: `${OIDC}apps:
  - name: Payroll
    externalUrl: http://payroll.localhost:8080/
    internalUrl: http://127.0.0.1:8000/
    sso: { plugin: passthrough }
`,
    errors: [{ at: '10:20', path: 'apps[0].sso.plugin', message: 'plugin "passthrough" is a preauth plugin, not an sso plugin' }],
  },
  {
    description: 'sso options failing the plugin schema (kcd-shim)',
    yaml: `${OIDC}plugins: [${JSON.stringify(KCD_SHIM)}]
apps:
  - name: Payroll
    externalUrl: http://payroll.localhost:8080/
    internalUrl: http://127.0.0.1:8000/
    sso:
      plugin: kcd-shim
      options:
        servicePrincipal: payroll.corp.internal
        tokenEndpoint: 42
`,
    errors: [
      { at: '14:27', path: 'apps[0].sso.options.servicePrincipal', message: '"payroll.corp.internal" is not valid: Service principal name of the app: SERVICE/host@REALM' },
      { at: '15:24', path: 'apps[0].sso.options.tokenEndpoint', message: 'must be a string, not number 42' },
    ],
  },
  {
    description: 'an sso option the plugin\'s create() would refuse at start, declared in its schema (kcd-shim tokenEndpoint: format uri)',
    yaml: `${OIDC}plugins: [${JSON.stringify(KCD_SHIM)}]
apps:
  - name: Payroll
    externalUrl: http://payroll.localhost:8080/
    internalUrl: http://127.0.0.1:8000/
    sso:
      plugin: kcd-shim
      options:
        servicePrincipal: HTTP/payroll.corp.internal@CORP.INTERNAL
        tokenEndpoint: "http://[::1"
`,
    errors: [{ at: '15:24', path: 'apps[0].sso.options.tokenEndpoint', message: '"http://[::1" is not a valid URL' }],
  },
  {
    description: 'an sso option failing both its pattern and its format is one problem, not two at the same place',
    yaml: `${OIDC}plugins: [${JSON.stringify(KCD_SHIM)}]
apps:
  - name: Payroll
    externalUrl: http://payroll.localhost:8080/
    internalUrl: http://127.0.0.1:8000/
    sso:
      plugin: kcd-shim
      options:
        servicePrincipal: HTTP/payroll.corp.internal@CORP.INTERNAL
        tokenEndpoint: "ftp://kdc bridge"
`,
    errors: [{ at: '15:24', path: 'apps[0].sso.options.tokenEndpoint', message: '"ftp://kdc bridge" is not valid: Internal URL of a delegation service' }],
  },
  {
    description: 'sso options missing a key the plugin requires',
    yaml: `${OIDC}plugins: [${JSON.stringify(KCD_SHIM)}]
apps:
  - name: Payroll
    externalUrl: http://payroll.localhost:8080/
    internalUrl: http://127.0.0.1:8000/
    sso: { plugin: kcd-shim }
`,
    errors: [{ at: '11:10', path: 'apps[0].sso.options', message: 'missing required key "servicePrincipal"' }],
  },
  {
    description: 'duplicate app names (case-insensitive)',
    yaml: `${GW}apps:
${app('Hello', 'a.localhost:8080')}${app('hello', 'b.localhost:8080')}`,
    errors: [{ at: '9:11', path: 'apps[1].name', message: 'duplicate app name "hello" (also apps[0])' }],
  },
  {
    description: 'two apps claiming the same host and path',
    yaml: `${GW}apps:
${app('One', 'hello.localhost:8080')}  - name: Two
    externalUrl: http://HELLO.localhost:8080
    internalUrl: http://127.0.0.1:3002/
    preAuth: passthrough
`,
    errors: [{ at: '10:18', path: 'apps[1].externalUrl', message: 'host and path already claimed by apps[0]' }],
  },
  {
    description: 'bad timezone',
    yaml: `${GW}policies:
  office-hours:
    when:
      time: { hours: 08:00-18:00, timezone: Europe/Atlantis }
    grant: block
apps: []
`,
    errors: [{ at: '7:45', path: 'policies.office-hours.when.time.timezone', message: '"Europe/Atlantis" is not an IANA timezone' }],
  },
  {
    description: 'hours past 24:00',
    yaml: `${GW}policies:
  late:
    when:
      time: { hours: 18:00-24:30, timezone: UTC }
    grant: block
apps: []
`,
    errors: [{ at: '7:22', path: 'policies.late.when.time.hours', message: '"18:00-24:30" is not a time window (use HH:MM-HH:MM, e.g. 08:00-18:00)' }],
  },
  {
    description: 'hours window reversed',
    yaml: `${GW}policies:
  nights:
    when:
      time: { hours: 18:00-08:00, timezone: Europe/Berlin }
    grant: block
apps: []
`,
    errors: [{ at: '7:22', path: 'policies.nights.when.time.hours', message: 'the window must end after it starts' }],
  },
  {
    description: 'hours that are not a time window',
    yaml: `${GW}policies:
  nights:
    when:
      time: { hours: 8-18, timezone: Europe/Berlin }
    grant: block
apps: []
`,
    errors: [{ at: '7:22', path: 'policies.nights.when.time.hours', message: '"8-18" is not a time window (use HH:MM-HH:MM, e.g. 08:00-18:00)' }],
  },
  {
    description: 'https listener without tls',
    yaml: `gateway:
  publicUrl: https://apps.example.test
  listen:
    https: 8443
apps: []
`,
    errors: [{ at: '4:12', path: 'gateway.listen.https', message: 'an https listener needs gateway.tls.cert and gateway.tls.key' }],
  },
  {
    description: 'externalUrl scheme without a matching listener',
    yaml: `${GW}apps:
  - name: Hello
    externalUrl: https://hello.example.test/
    internalUrl: http://127.0.0.1:3001/
    preAuth: passthrough
`,
    errors: [{ at: '6:18', path: 'apps[0].externalUrl', message: 'is https but gateway.listen.https is not set' }],
  },
  {
    description: 'preAuth oidc (the default) without identity and session',
    yaml: `${GW}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
`,
    errors: [
      { at: '5:5', path: 'apps[0].preAuth', message: 'preAuth oidc needs the identity: section' },
      { at: '5:5', path: 'apps[0].preAuth', message: 'preAuth oidc needs the session: section' },
    ],
  },
  {
    description: 'assignment on a passthrough app',
    yaml: `${GW}apps:
${app('Hello', 'hello.localhost:8080', '    assignment: { groups: [finance] }\n')}`,
    errors: [{ at: '9:17', path: 'apps[0].assignment', message: 'assignment needs preAuth: oidc' }],
  },
  {
    description: 'sso on a passthrough app',
    yaml: `${GW}plugins: [${JSON.stringify(KCD_SHIM)}]
apps:
${app('Hello', 'hello.localhost:8080', '    sso: { plugin: kcd-shim, options: { servicePrincipal: HTTP/hello@CORP } }\n')}`,
    errors: [{ at: '10:10', path: 'apps[0].sso', message: 'single sign-on needs preAuth: oidc' }],
  },
  {
    description: 'short session secret',
    yaml: `${GW}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s }
session:
  secrets: ["0123456789abcdef0123456789abcdef", too-short]
apps: []
`,
    errors: [{ at: '6:49', path: 'session.secrets[1]', message: 'a session secret needs at least 32 characters' }],
  },
  {
    description: 'identity scopes without openid',
    yaml: `${GW}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s, scopes: [profile] }
apps: []
`,
    errors: [{ at: '4:91', path: 'identity.scopes', message: 'must include "openid"' }],
  },
  {
    description: 'a non-https issuer that is not on loopback',
    yaml: `${GW}identity: { issuer: http://login.example.test, clientId: drawbridge, clientSecret: s }
apps: []
`,
    errors: [{ at: '4:21', path: 'identity.issuer', message: 'must be https (http only for localhost)' }],
  },
  {
    description: 'an algorithm outside the allowed list',
    yaml: `${GW}identity:
  issuer: http://127.0.0.1:9000
  clientId: drawbridge
  clientSecret: s
  algorithms: [RS256, none]
apps: []
`,
    errors: [{ at: '8:23', path: 'identity.algorithms[1]', message: '"none" is not allowed here: must be "RS256"' }],
  },
  {
    description: 'duplicate YAML key',
    yaml: `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
  publicUrl: http://localhost:8081
apps: []
`,
    errors: [{ at: '4:3', path: 'gateway.publicUrl', message: 'duplicate key "publicUrl"' }],
  },
  {
    description: 'invalid name key in connectorGroups',
    yaml: `${GW}connectors: { listen: 8444 }
connectorGroups:
  eu datacenter: {}
apps: []
`,
    errors: [{ at: '6:3', path: 'connectorGroups["eu datacenter"]', message: `"eu datacenter" is not a valid name: use letters, digits, '.', '_' or '-'` }],
  },
  {
    description: 'names that look like numbers are names, not list indexes',
    yaml: `${GW}connectors: { listen: 8444 }
connectorGroups:
  2024: { loadBalancing: random }
policies:
  "1": { when: { group: [x] }, grant: block }
apps: []
`,
    errors: [
      { at: '6:26', path: 'connectorGroups["2024"].loadBalancing', message: '"random" is not allowed here: must be "least-inflight" or "round-robin"' },
      { at: '8:18', path: 'policies["1"].when.group', message: 'unknown key "group" (did you mean "groups"?)' },
    ],
  },
  {
    description: 'backendTimeout that is neither default, long nor a duration',
    yaml: `${GW}apps:
${app('Hello', 'hello.localhost:8080', '    backendTimeout: forever\n')}`,
    errors: [{ at: '9:21', path: 'apps[0].backendTimeout', message: '"forever" is not allowed here: must be "default", "long" or a duration such as 90s' }],
  },
  {
    description: 'backendTimeout out of range',
    yaml: `${GW}apps:
${app('Hello', 'hello.localhost:8080', '    backendTimeout: 2h\n')}`,
    errors: [{ at: '9:21', path: 'apps[0].backendTimeout', message: 'must be between 100ms and 1h' }],
  },
  {
    description: 'listen port out of range',
    yaml: `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 70000 }
apps: []
`,
    errors: [{ at: '3:19', path: 'gateway.listen.http', message: '70000 is not allowed here: must be a port number (0-65535) or host:port' }],
  },
  {
    description: 'listen port written in quotes',
    yaml: `gateway:
  publicUrl: http://localhost:8080
  listen: { http: "8080" }
apps: []
`,
    errors: [{ at: '3:19', path: 'gateway.listen.http', message: '"8080" is not allowed here: must be a port number (0-65535) or host:port (a port is written without quotes)' }],
  },
  {
    description: 'host:port listen with a port out of range',
    yaml: `gateway:
  publicUrl: http://localhost:8080
  listen: { http: "127.0.0.1:99999" }
apps: []
`,
    errors: [{ at: '3:19', path: 'gateway.listen.http', message: 'port 99999 is out of range (0-65535)' }],
  },
  {
    description: 'two listeners on one port',
    yaml: `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
  admin: { listen: 127.0.0.1:8080 }
apps: []
`,
    errors: [{ at: '4:20', path: 'gateway.admin.listen', message: 'port 8080 is already taken by gateway.listen.http' }],
  },
  {
    description: "connectors.listen on the http listener's port (only the https listener's can be shared)",
    yaml: `${GW}connectors: { listen: 8080 }
apps: []
`,
    errors: [{ at: '4:23', path: 'connectors.listen', message: 'port 8080 is already taken by gateway.listen.http' }],
  },
  {
    description: "connectors.listen on the admin listener's port",
    yaml: `${GW}  admin: { listen: 127.0.0.1:9091 }
connectors: { listen: 127.0.0.1:9091 }
apps: []
`,
    errors: [{ at: '5:23', path: 'connectors.listen', message: 'port 9091 is already taken by gateway.admin.listen' }],
  },
  {
    description: 'a wildcard that is not the whole first label',
    yaml: `${GW}apps:
  - name: Hello
    externalUrl: http://apps.*.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    preAuth: passthrough
`,
    errors: [{ at: '6:18', path: 'apps[0].externalUrl', message: 'a wildcard must be the whole first label of the host' }],
  },
  {
    description: 'translateUrls.body not a boolean',
    yaml: `${GW}apps:
${app('Hello', 'hello.localhost:8080', '    translateUrls: { body: yes please }\n')}`,
    errors: [{ at: '9:28', path: 'apps[0].translateUrls.body', message: 'must be a boolean, not string "yes please"' }],
  },
  {
    description: 'reserved identity header (Host)',
    yaml: `${OIDC}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    headers:
      identity:
        X-Remote-User: user
        Host: user
`,
    errors: [{ at: '13:9', path: 'apps[0].headers.identity.Host', message: 'Host cannot carry an identity: the gateway or HTTP owns it' }],
  },
  {
    description: 'identity header name that is not a header name',
    yaml: `${OIDC}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    headers:
      identity: { "X Remote User": user }
`,
    errors: [{ at: '11:19', path: 'apps[0].headers.identity["X Remote User"]', message: '"X Remote User" is not a valid header name' }],
  },
  {
    description: 'policy with neither grant nor session',
    yaml: `${GW}policies:
  useless:
    when: { groups: [finance] }
apps: []
`,
    errors: [{ at: '5:3', path: 'policies.useless', message: 'a policy needs a grant or a session control' }],
  },
  {
    description: 'clientApps bad enum',
    yaml: `${GW}policies:
  p:
    when: { clientApps: [browser, mobile] }
    grant: block
apps: []
`,
    errors: [{ at: '6:35', path: 'policies.p.when.clientApps[1]', message: '"mobile" is not allowed here: must be "browser" or "native"' }],
  },
  {
    description: 'connector certificate lifetime under a minute',
    yaml: `${GW}connectors: { listen: 8444, certificateLifetime: 30s }
apps: []
`,
    errors: [{ at: '4:50', path: 'connectors.certificateLifetime', message: 'must be at least 1m' }],
  },
  {
    description: 'connector certificate lifetime over a year (a far one failed every enrollment)',
    yaml: `${GW}connectors: { listen: 8444, certificateLifetime: 99999999d }
apps: []
`,
    errors: [{ at: '4:50', path: 'connectors.certificateLifetime', message: 'must be at most 365d' }],
  },
  {
    description: 'a connectors.serverNames entry that is neither a DNS name nor an IP address',
    yaml: `${GW}connectors: { listen: 8444, serverNames: ["lb example", ok.example.test, 10.0.0.1, "[::1]"] }
apps: []
`,
    errors: [{ at: '4:43', path: 'connectors.serverNames[0]', message: '"lb example" is not a DNS name or an IP address' }],
  },
  {
    description: 'connector certificate lifetime too long to be a number at all',
    yaml: `${GW}connectors: { listen: 8444, certificateLifetime: ${'9'.repeat(400)}d }
apps: []
`,
    errors: [{ at: '4:50', path: 'connectors.certificateLifetime', message: 'must be at most 365d' }],
  },
  {
    description: 'one identity header twice in different letter case (only one would be sent)',
    yaml: `${OIDC}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    headers:
      identity:
        X-Remote-User: groups
        x-remote-user: user
`,
    errors: [{ at: '13:9', path: 'apps[0].headers.identity.x-remote-user', message: 'x-remote-user is X-Remote-User again (header names ignore letter case): only one of the two would be sent' }],
  },
  {
    description: 'a !!binary value is named as binary, not as a mapping',
    yaml: `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
  stateDir: !!binary aGVsbG8=
apps: []
`,
    errors: [{ at: '4:22', path: 'gateway.stateDir', message: 'must be a string, not binary data (a !!binary value)' }],
  },
  {
    description: 'a reference that is neither ${env:} nor ${file:}',
    yaml: `${GW}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: "\${vault:secret}" }
apps: []
`,
    errors: [{ at: '4:80', path: 'identity.clientSecret', message: 'unknown reference: use ${env:NAME} or ${file:path}' }],
  },
  {
    description: 'a reference without its closing } (it was kept as text: the session secret was the text of the file), a } after one, and a secret that looks like a mistyped reference',
    yaml: `${GW}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: "{file:/run/secrets/client}" }
session:
  secrets:
    - "\${file:/run/secrets/drawbridge-session-secret"
    - "\${env:SESSION_SECRET}}"
    - "$(cat /run/secrets/drawbridge-session-secret)"
apps: []
`,
    errors: [
      { at: '4:80', path: 'identity.clientSecret', message: 'looks like a mistyped ${env:NAME} or ${file:path}: as written, this text would be the secret, and anyone who reads the file could sign in as any user' },
      { at: '7:7', path: 'session.secrets[0]', message: 'a reference without its closing }: write ${env:NAME} or ${file:path} (as written, the text itself would be the value)' },
      { at: '8:7', path: 'session.secrets[1]', message: 'a } right after a reference: it would end the value' },
      { at: '9:7', path: 'session.secrets[2]', message: 'looks like a mistyped ${env:NAME} or ${file:path}: as written, this text would be the secret, and anyone who reads the file could sign in as any user' },
    ],
  },
  {
    description: 'a session cookie lifetime under a second (the session expired as it was issued: every sign-in looped); 1s is fine',
    yaml: `${GW}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"], cookie: { lifetime: 0s } }
apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    cookies: { lifetime: 500ms }
  - name: Short
    externalUrl: http://short.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    cookies: { lifetime: 1s }
`,
    errors: [
      { at: '5:79', path: 'session.cookie.lifetime', message: 'must be at least 1s: a shorter session expires as it is issued, and every sign-in would loop back to the provider' },
      { at: '10:26', path: 'apps[0].cookies.lifetime', message: 'must be at least 1s' },
    ],
  },
  {
    description: 'a session cookie lifetime past what browsers keep (400 days), or past any date',
    yaml: `${GW}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"], cookie: { lifetime: 401d } }
apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    cookies: { lifetime: 99999999999999999999999d }
  - name: Year
    externalUrl: http://year.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    cookies: { lifetime: 400d }
`,
    errors: [
      { at: '5:79', path: 'session.cookie.lifetime', message: 'must be at most 400d: browsers keep no cookie longer' },
      { at: '10:26', path: 'apps[0].cookies.lifetime', message: 'must be at most 400d' },
    ],
  },
  {
    description: 'a signInFrequency of 0s (lint passed it; the start then failed at an app, saying "not a duration")',
    yaml: `${GW}policies:
  fresh: { session: { signInFrequency: 0s } }
  sub-second: { session: { signInFrequency: 500ms } }
  one-second: { session: { signInFrequency: 1s } }
apps: []
`,
    errors: [
      { at: '5:40', path: 'policies.fresh.session.signInFrequency', message: 'must be at least 1s (sign-in ages are counted in whole seconds)' },
      { at: '6:45', path: 'policies.sub-second.session.signInFrequency', message: 'must be at least 1s' },
    ],
  },
  {
    description: 'the assertion header named like one of the identity headers (the app got the JWT as the user name)',
    yaml: `${OIDC}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    headers:
      identity: { X-Remote-User: user, X-Remote-Groups: groups }
      assertion: x-remote-user
`,
    errors: [{ at: '12:18', path: 'apps[0].headers.assertion', message: `x-remote-user is also headers.identity's X-Remote-User (header names ignore letter case): the app would get the assertion in place of "user"` }],
  },
  {
    description: 'identity headers that differ only by -, _ or . (CGI-style servers read them as one variable, values joined)',
    yaml: `${OIDC}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    headers:
      identity:
        X-Remote-User: user
        X_Remote_User: email
        x.remote.user: name
`,
    errors: [
      { at: '13:9', path: 'apps[0].headers.identity.X_Remote_User', message: 'X_Remote_User is X-Remote-User again (CGI-style servers read _ and . as -): the app would read both values as one' },
      { at: '14:9', path: 'apps[0].headers.identity["x.remote.user"]', message: 'x.remote.user is X-Remote-User again' },
    ],
  },
  {
    description: 'the assertion header named like an identity header but for -, _ or . (the app got the JWT joined to the user name)',
    yaml: `${OIDC}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    headers:
      identity: { X-Remote-User: user }
      assertion: X.Remote.User
`,
    errors: [{ at: '12:18', path: 'apps[0].headers.assertion', message: `X.Remote.User is also headers.identity's X-Remote-User (CGI-style servers read _ and . as -): the app would get the assertion in place of "user"` }],
  },
  {
    description: 'reserved header names in their _ and . spellings (X_Forwarded_For, X.Correlation.Id)',
    yaml: `${OIDC}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    headers:
      identity:
        X_Forwarded_For: user
      assertion: X.Correlation.Id
`,
    errors: [
      { at: '12:9', path: 'apps[0].headers.identity.X_Forwarded_For', message: 'X_Forwarded_For cannot carry an identity: the gateway or HTTP owns it' },
      { at: '13:18', path: 'apps[0].headers.assertion', message: 'X.Correlation.Id cannot carry the assertion' },
    ],
  },
  {
    description: 'the header that says the groups are incomplete (X-Drawbridge-Groups-Incomplete) is the gateway\'s',
    yaml: `${OIDC}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    headers:
      identity:
        X-Remote-Groups: groups
        X-Drawbridge-Groups-Incomplete: email
`,
    errors: [{ at: '13:9', path: 'apps[0].headers.identity.X-Drawbridge-Groups-Incomplete', message: 'X-Drawbridge-Groups-Incomplete cannot carry an identity: the gateway or HTTP owns it' }],
  },
  {
    description: 'a cookie name with a browser prefix (__Host-, __Secure-, any letter case): the gateway adds __Host- itself, and a prefix the cookie does not meet makes sign-in loop',
    yaml: `${GW}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s }
session: { secrets: ["0123456789abcdef0123456789abcdef"], cookie: { name: __Secure-sess } }
apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    cookies: { name: __host-sess }
  - name: Plain
    externalUrl: http://plain.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    cookies: { name: _Host_sess }
`,
    errors: [
      { at: '5:75', path: 'session.cookie.name', message: 'must not start with __Secure-: the gateway adds the __Host- prefix itself where a cookie can carry it, and browsers drop a prefixed cookie that does not meet the prefix\'s rules (sign-in would loop)' },
      { at: '10:22', path: 'apps[0].cookies.name', message: 'must not start with __host-' },
    ],
  },
  {
    description: 'empty claim names (with claims.user "" no token names a user, and nobody can sign in)',
    yaml: `${GW}identity:
  issuer: http://127.0.0.1:9000
  clientId: drawbridge
  claims: { user: "", groups: "" }
policies:
  p:
    when: { claims: { "": { exists: true } } }
    grant: block
apps: []
`,
    errors: [
      { at: '7:19', path: 'identity.claims.user', message: 'must not be empty' },
      { at: '7:31', path: 'identity.claims.groups', message: 'must not be empty' },
      { at: '10:23', path: 'policies.p.when.claims[""]', message: 'a claim name must not be empty' },
    ],
  },
  {
    description: 'a clock tolerance over 10 minutes (60d for 60s accepted tokens expired two months ago)',
    yaml: `${GW}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s, clockTolerance: 60d }
apps: []
`,
    errors: [{ at: '4:99', path: 'identity.clockTolerance', message: 'must be at most 10m: tokens are accepted this long after they expire' }],
  },
  {
    description: 'a clock tolerance too long to be a number at all',
    yaml: `${GW}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s, clockTolerance: ${'9'.repeat(400)}d }
apps: []
`,
    errors: [{ at: '4:99', path: 'identity.clockTolerance', message: 'must be at most 10m' }],
  },
  {
    description: 'what the gateway refuses to start with: a path glob without a leading /, a claim condition that tests nothing, an assignment that names nobody',
    yaml: `${OIDC}policies:
  p:
    when: { paths: [admin/*], claims: { tid: {} } }
    grant: block
apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    conditionalAccess: [p]
    assignment: { users: [], groups: [] }
`,
    errors: [
      { at: '8:21', path: 'policies.p.when.paths[0]', message: '"admin/*" must start with /' },
      { at: '8:46', path: 'policies.p.when.claims.tid', message: 'needs equals, includes or exists' },
      { at: '15:17', path: 'apps[0].assignment', message: 'lists no users and no groups: nobody could use the app' },
    ],
  },
  {
    description: 'an empty condition list (a block that would never apply, letting everyone in)',
    yaml: `${OIDC}locations: { office: [10.0.0.0/8] }
policies:
  p:
    when:
      users: []
      groups: []
      apps: []
      locations: []
      notLocations: []
      clientApps: []
      devicePlatforms: []
      methods: []
      paths: []
      time: { days: [], timezone: UTC }
    grant: block
apps: []
`,
    errors: [
      { at: '10:14', path: 'policies.p.when.users', message: 'must not be empty: an empty list matches no request, so the policy would never apply; leave the key out for no condition' },
      { at: '11:15', path: 'policies.p.when.groups', message: 'must not be empty: an empty list matches no request' },
      { at: '12:13', path: 'policies.p.when.apps', message: 'must not be empty: an empty list matches no request' },
      { at: '13:18', path: 'policies.p.when.locations', message: 'must not be empty: an empty list matches no request' },
      { at: '14:21', path: 'policies.p.when.notLocations', message: 'must not be empty: an empty list matches no request' },
      { at: '15:19', path: 'policies.p.when.clientApps', message: 'must not be empty: an empty list matches no request' },
      { at: '16:24', path: 'policies.p.when.devicePlatforms', message: 'must not be empty: an empty list matches no request' },
      { at: '17:16', path: 'policies.p.when.methods', message: 'must not be empty: an empty list matches no request' },
      { at: '18:14', path: 'policies.p.when.paths', message: 'must not be empty: an empty list matches no request' },
      { at: '19:21', path: 'policies.p.when.time.days', message: 'must not be empty: an empty list matches no request' },
    ],
  },
  {
    description: 'invisible and bidi characters quoted from the file are escaped (a zero-width space read as "preAuth" (did you mean "preAuth"?), a right-to-left override reordered the line)',
    yaml: `${OIDC}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    pre\u200bAuth: oidc
  - name: Other
    externalUrl: http://other.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    preAuth: "passthrough\u202e\u00a0"
    conditionalAccess: ["p\u2066x"]
`,
    errors: [
      { at: '10:5', path: 'apps[0]["pre\\u200bAuth"]', message: 'unknown key "pre\\u200bAuth" (did you mean "preAuth"?)' },
      { at: '14:14', path: 'apps[1].preAuth', message: '"passthrough\\u202e\\u00a0" is not allowed here' },
      { at: '15:25', path: 'apps[1].conditionalAccess[0]', message: 'unknown policy "p\\u2066x"' },
    ],
  },
];

describe('config lint: broken configs', () => {
  const dir = tempDir('drawbridge-lint-');
  cases.forEach((c, i) => {
    it(c.description, async () => {
      const file = join(dir, `case${i}.yaml`);
      writeFileSync(file, c.yaml);
      const r = await loadConfigFile(file, { mode: 'lint', env: {} });
      const errors = r.problems.filter((p) => p.severity === 'error');
      const got = errors.map((p) => `${p.line}:${p.col} ${p.path} | ${p.message}`);
      assert.equal(r.config, undefined, 'an invalid file yields no config');
      assert.equal(errors.length, c.errors.length, `expected ${c.errors.length} error(s), got:\n${got.join('\n')}`);
      c.errors.forEach((e, j) => {
        const p = errors[j]!;
        assert.equal(`${p.line}:${p.col}`, e.at, `error ${j} position: ${got[j]}`);
        assert.equal(p.path, e.path, `error ${j} key path: ${got[j]}`);
        assert.ok(p.message.includes(e.message), `error ${j} message: ${got[j]}\nexpected to contain: ${e.message}`);
        assert.equal(p.file, file);
      });
    });
  });

  it(`has at least 30 cases (${cases.length})`, () => assert.ok(cases.length >= 30));
});

describe('config lint: certificate files are read, not only found', () => {
  const dir = tempDir('drawbridge-lint-pem-');
  before(() => {
    const one = selfSignedCert(dir, 'one', ['localhost', 'hello.localhost']);
    const two = selfSignedCert(dir, 'two', ['localhost']);
    writeFileSync(join(dir, 'garbage.pem'), 'garbage\n');
    writeFileSync(join(dir, 'broken.crt'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    writeFileSync(join(dir, 'chain.crt'), `${one.certPem}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`);
    copyFileSync(two.key, join(dir, 'other.key'));
  });
  const TLS = (cert: string, key: string) => `gateway:
  publicUrl: https://localhost:8443
  listen: { https: 8443 }
  tls: { cert: ${cert}, key: ${key} }
`;
  const backendCa = (ca: string) => `apps:
  - name: Hello
    externalUrl: https://hello.localhost:8443/
    internalUrl: https://127.0.0.1:3001/
    preAuth: passthrough
    backend: { tls: { ca: ${ca} } }
`;
  const pemCases: Case[] = [
    { description: 'a matching certificate and key are clean', yaml: `${TLS('./one.crt', './one.key')}${backendCa('./two.crt')}`, errors: [] },
    { description: "connectors.listen on the https listener's own address is clean: the two share its port", yaml: `${TLS('./one.crt', './one.key')}connectors: { listen: 8443 }\napps: []\n`, errors: [] },
    {
      description: "connectors.listen on the https listener's port but one address, where https binds every interface",
      yaml: `${TLS('./one.crt', './one.key')}connectors: { listen: 127.0.0.1:8443 }\napps: []\n`,
      errors: [{ at: '5:23', path: 'connectors.listen', message: 'port 8443 is already taken by gateway.listen.https: to share its port, connectors.listen must name the same address' }],
    },
    {
      description: 'a certificate file with no certificate in it',
      yaml: `${TLS('./garbage.pem', './one.key')}apps: []\n`,
      errors: [{ at: '4:16', path: 'gateway.tls.cert', message: 'file "./garbage.pem" holds no PEM certificate (no -----BEGIN CERTIFICATE----- block)' }],
    },
    {
      description: 'a certificate block that is not a certificate',
      yaml: `${TLS('./broken.crt', './one.key')}apps: []\n`,
      errors: [{ at: '4:16', path: 'gateway.tls.cert', message: 'file "./broken.crt" holds a certificate block that is not a valid X.509 certificate' }],
    },
    {
      description: 'a chain with one broken certificate names which',
      yaml: `${TLS('./chain.crt', './one.key')}apps: []\n`,
      errors: [{ at: '4:16', path: 'gateway.tls.cert', message: 'file "./chain.crt" certificate 2 of 2 is not a valid X.509 certificate' }],
    },
    {
      description: 'a key file that holds a certificate',
      yaml: `${TLS('./one.crt', './one.crt')}apps: []\n`,
      errors: [{ at: '4:32', path: 'gateway.tls.key', message: 'file "./one.crt" holds no PEM private key' }],
    },
    {
      description: 'a key that belongs to another certificate',
      yaml: `${TLS('./one.crt', './other.key')}apps: []\n`,
      errors: [{ at: '4:32', path: 'gateway.tls.key', message: 'is not the private key of the certificate in gateway.tls.cert (CN=localhost)' }],
    },
    {
      description: 'a backend CA file with no certificate in it',
      yaml: `${TLS('./one.crt', './one.key')}${backendCa('./garbage.pem')}`,
      errors: [{ at: '10:27', path: 'apps[0].backend.tls.ca', message: 'file "./garbage.pem" holds no PEM certificate' }],
    },
  ];
  it('an expired gateway certificate is a warning at its key (it may be renewed where the gateway runs)', async () => {
    const kp = await generateKeyPair();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01',
      name: 'CN=localhost',
      notBefore: new Date('2020-01-01T00:00:00Z'),
      notAfter: new Date('2021-01-01T00:00:00Z'),
      keys: kp.keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    });
    writeFileSync(join(dir, 'old.crt'), cert.toString('pem'));
    writeFileSync(join(dir, 'old.key'), kp.keyPem, { mode: 0o600 });
    const file = join(dir, 'expired.yaml');
    writeFileSync(file, `${TLS('./old.crt', './old.key')}apps: []\n`);
    const r = await loadConfigFile(file, { mode: 'lint', env: {} });
    assert.deepEqual(
      r.problems.map((p) => `${p.severity} ${p.line}:${p.col} ${p.path}: ${p.message}`),
      ['warning 4:16 gateway.tls.cert: the certificate expired on 2021-01-01: browsers and clients will refuse it'],
    );
  });

  it("a served certificate's key file that every user can read, or its group write, is a warning at its key; group read is not (ssl-cert, the service unit's group)", async () => {
    const file = join(dir, 'keymode.yaml');
    writeFileSync(file, `${TLS('./one.crt', './modes.key')}${backendCa('./one.crt')}`);
    const told = (mode: number, who: string) => [`warning 4:32 gateway.tls.key: the private key file's mode is 0${mode.toString(8)}: ${who}, and whoever holds the key can pose as this gateway to its clients; run chmod 600 ./modes.key (640 when a group must read it)`];
    const cases: [number, string[]][] = [
      [0o644, told(0o644, 'every user of this host can read it')],
      [0o606, told(0o606, 'every user of this host can read and replace it')],
      [0o660, told(0o660, 'its group can replace it')],
      [0o640, []],
      [0o600, []],
    ];
    for (const [mode, expected] of cases) {
      copyFileSync(join(dir, 'one.key'), join(dir, 'modes.key'));
      chmodSync(join(dir, 'modes.key'), mode);
      const r = await loadConfigFile(file, { mode: 'lint', env: {} });
      assert.deepEqual(r.problems.map((p) => `${p.severity} ${p.line}:${p.col} ${p.path}: ${p.message}`), expected, mode.toString(8));
    }
  });

  it('a gateway certificate with a key clients refuse (RSA under 2048 bits, a curve they do not offer), not valid yet, not covering the published hosts, or with a chain that does not link: warnings at its key', async () => {
    const kp = await generateKeyPair();
    const later = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '02',
      name: 'CN=localhost',
      notBefore: new Date(Date.now() + 2 * 86_400_000),
      notAfter: new Date(Date.now() + 30 * 86_400_000),
      keys: kp.keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'localhost' }, { type: 'dns', value: 'hello.localhost' }])],
    });
    writeFileSync(join(dir, 'later.crt'), later.toString('pem'));
    writeFileSync(join(dir, 'later.key'), kp.keyPem, { mode: 0o600 });
    selfSignedCert(dir, 'elsewhere', ['elsewhere.example']);
    const unrelated = selfSignedCert(dir, 'unrelated', ['unrelated.example']);
    writeFileSync(join(dir, 'badchain.crt'), readFileSync(join(dir, 'one.crt'), 'utf8') + readFileSync(unrelated.cert, 'utf8'));
    // (Node serves both; Debian's curl refuses the first: "EE certificate key too weak")
    selfSignedCert(dir, 'rsa1024', ['localhost', 'hello.localhost'], ['-newkey', 'rsa:1024']);
    selfSignedCert(dir, 'p224', ['localhost', 'hello.localhost'], ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-224']);
    const STRONG_KEY = 'issue one with an RSA key of 2048 bits or more, or an EC P-256 key';
    const cases: [string, string, string][] = [
      ['./rsa1024.crt', './rsa1024.key', `the certificate's RSA key has 1024 bits: curl and other clients of a system OpenSSL at security level 2 (Debian, Ubuntu, RHEL) refuse it ("EE certificate key too weak"); ${STRONG_KEY}`],
      ['./p224.crt', './p224.key', `the certificate's key is on the curve secp224r1, which browsers do not offer: they refuse it; ${STRONG_KEY}`],
      ['./later.crt', './later.key', `the certificate is valid only from ${later.notBefore.toISOString().slice(0, 10)}: browsers and clients will refuse it`],
      ['./elsewhere.crt', './elsewhere.key', 'the certificate does not cover localhost, hello.localhost: clients that check the name will refuse it'],
      ['./badchain.crt', './one.key', 'certificate 2 in the file did not sign certificate 1: clients that need the chain will refuse it'],
    ];
    for (const [cert, key, message] of cases) {
      const file = join(dir, 'warned.yaml');
      writeFileSync(file, `${TLS(cert, key)}${backendCa('./one.crt')}`);
      const r = await loadConfigFile(file, { mode: 'lint', env: {} });
      assert.deepEqual(r.problems.map((p) => `${p.severity} ${p.line}:${p.col} ${p.path}: ${p.message}`), [`warning 4:16 gateway.tls.cert: ${message}`], cert);
    }
    // certbot's cert.pem: a leaf whose issuer is neither in the file nor a public root, and which
    // says where to fetch it (browsers do; curl, Node and Java fetch no missing intermediate);
    // with the issuer appended (fullchain.pem), clean
    const caKeys = await generateKeyPair();
    const caCert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '0a',
      name: 'CN=Lint Test Issuing CA',
      keys: caKeys.keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    });
    const issueLeaf = async (serial: string, extensions: x509.Extension[]) => {
      const kp = await generateKeyPair();
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: serial,
        subject: 'CN=localhost',
        issuer: caCert.subject,
        publicKey: kp.keys.publicKey,
        signingKey: caKeys.keys.privateKey,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
        extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'localhost' }, { type: 'dns', value: 'hello.localhost' }]), ...extensions],
      });
      return { pem: leaf.toString('pem'), keyPem: kp.keyPem };
    };
    const issued = await issueLeaf('0b', [new x509.AuthorityInfoAccessExtension({ caIssuers: 'http://ca.example.test/issuing.crt' })]);
    const leafPem = issued.pem;
    writeFileSync(join(dir, 'leaf-only.crt'), leafPem);
    writeFileSync(join(dir, 'full-chain.crt'), leafPem + caCert.toString('pem'));
    writeFileSync(join(dir, 'issued.key'), issued.keyPem, { mode: 0o600 });
    const issuer = new X509Certificate(leafPem).issuer.replace(/\n/g, ', ');
    // A leaf a private root signed that names no place to fetch its issuer from (what an openssl
    // CA makes): clients that trust the root need nothing more, so nothing is said
    const privateLeaf = await issueLeaf('0c', []);
    writeFileSync(join(dir, 'private-leaf.crt'), privateLeaf.pem);
    writeFileSync(join(dir, 'private-leaf.key'), privateLeaf.keyPem, { mode: 0o600 });
    const privateOnly = join(dir, 'private-leaf.yaml');
    writeFileSync(privateOnly, `${TLS('./private-leaf.crt', './private-leaf.key')}${backendCa('./one.crt')}`);
    assert.deepEqual((await loadConfigFile(privateOnly, { mode: 'lint', env: {} })).problems, []);
    const leafOnly = join(dir, 'leaf-only.yaml');
    writeFileSync(leafOnly, `${TLS('./leaf-only.crt', './issued.key')}${backendCa('./one.crt')}`);
    assert.deepEqual(
      (await loadConfigFile(leafOnly, { mode: 'lint', env: {} })).problems.map((p) => `${p.severity} ${p.line}:${p.col} ${p.path}: ${p.message}`),
      [`warning 4:16 gateway.tls.cert: the file ends with a certificate issued by ${issuer}, which the file does not hold and which is no public root: clients that do not fetch missing intermediates (curl, Node, Java) will refuse it; use the full chain (certbot's fullchain.pem, not cert.pem), or for a private CA append its root`],
    );
    const fullChain = join(dir, 'full-chain.yaml');
    writeFileSync(fullChain, `${TLS('./full-chain.crt', './issued.key')}${backendCa('./one.crt')}`);
    assert.deepEqual((await loadConfigFile(fullChain, { mode: 'lint', env: {} })).problems, []);
    // a wildcard certificate covers a wildcard app host and any name under it
    const wild = selfSignedCert(dir, 'wild', ['localhost', '*.apps.localhost']);
    const file = join(dir, 'wild.yaml');
    writeFileSync(file, `${TLS('./wild.crt', './wild.key')}apps:\n  - name: Any\n    externalUrl: https://*.apps.localhost:8443/\n    internalUrl: http://127.0.0.1:3001/\n    preAuth: passthrough\n`);
    assert.equal(wild.cert, join(dir, 'wild.crt'));
    assert.deepEqual((await loadConfigFile(file, { mode: 'lint', env: {} })).problems, []);
  });

  it("secure: false on an https app's session cookie is warned: once at session.cookie, naming the first app, or at the app's own key; an app with its own secure: true is not", async () => {
    const SENT = 'secure: false on an https app: its session cookie is sent without Secure, so the browser also sends it over plain http, where anyone on the network path can read it';
    const head = `${TLS('./one.crt', './one.key')}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s }
session:
  secrets: ["0123456789abcdef0123456789abcdef"]
  cookie: { secure: false }
apps:
`;
    const app = (name: string, extra = '') => `  - name: ${name}\n    externalUrl: https://hello.localhost:8443/${name.toLowerCase()}/\n    internalUrl: http://127.0.0.1:3001/${name.toLowerCase()}/\n${extra}`;
    const cases: [string, string[]][] = [
      [head + app('Hello') + app('Team'), [`warning 8:21 session.cookie.secure: ${SENT} (apps[0] "Hello" and every https app that does not set its own)`]],
      [head + app('Hello', '    cookies: { secure: true }\n') + app('Own', '    cookies: { secure: false }\n'), [`warning 17:24 apps[1].cookies.secure: ${SENT}`]],
    ];
    for (const [yaml, expected] of cases) {
      const file = join(dir, 'insecure.yaml');
      writeFileSync(file, yaml);
      const r = await loadConfigFile(file, { mode: 'lint', env: {} });
      assert.deepEqual(r.problems.map((p) => `${p.severity} ${p.line}:${p.col} ${p.path}: ${p.message}`), expected, yaml);
    }
  });

  it('an app certificate (apps[].tls, served by SNI): clean when it covers its host, which gateway.tls then need not; errors and warnings at its keys', async () => {
    selfSignedCert(dir, 'shop', ['shop.example']);
    selfSignedCert(dir, 'shops', ['*.shops.example']);
    const app = (name: string, url: string, tls: string) => `  - name: ${name}
    externalUrl: ${url}
    internalUrl: http://127.0.0.1:3001${new URL(url).pathname}
    preAuth: passthrough
    tls: ${tls}
`;
    const cases: [string, string[]][] = [
      [app('Shop', 'https://shop.example:8443/', '{ cert: ./shop.crt, key: ./shop.key }'), []],
      [app('Shop', 'https://shop.example:8443/', '{ cert: ./shop.crt, key: ./one.key }'), ['error 10:35 apps[0].tls.key: is not the private key of the certificate in apps[0].tls.cert (CN=shop.example)']],
      [app('Shop', 'https://hello.localhost:8443/', '{ cert: ./shop.crt, key: ./shop.key }'), ['warning 10:18 apps[0].tls.cert: the certificate does not cover hello.localhost: clients that check the name will refuse it']],
      [app('Shop', 'https://shop.example:8443/', '{ cert: ./shop.crt, key: ./shop.key }') + app('ShopApi', 'https://shop.example:8443/api/', '{ cert: ./one.crt, key: ./one.key }'),
        ['error 15:10 apps[1].tls: apps[0] has another certificate for host shop.example: a host is served one certificate (clients name the host, not the path, when they ask for it); give both apps the same tls', 'warning 15:18 apps[1].tls.cert: the certificate does not cover shop.example: clients that check the name will refuse it']],
      // one host's apps that name the same files, however the paths are spelled, share one certificate
      [app('Shop', 'https://shop.example:8443/', '{ cert: ./shop.crt, key: ./shop.key }') + app('ShopApi', 'https://shop.example:8443/api/', `{ cert: shop.crt, key: "${join(dir, 'shop.key')}" }`), []],
      // a host one label under a `*.` app's host is served that app's certificate, not gateway.tls; two labels under, gateway.tls
      [app('Shops', 'https://*.shops.example:8443/', '{ cert: ./shops.crt, key: ./shops.key }') + app('Eu', 'https://eu.shops.example:8443/', '{}').replace('    tls: {}\n', ''), []],
      [app('Shops', 'https://*.shops.example:8443/', '{ cert: ./shops.crt, key: ./shops.key }') + app('Eu', 'https://a.eu.shops.example:8443/', '{}').replace('    tls: {}\n', ''),
        ['warning 4:16 gateway.tls.cert: the certificate does not cover a.eu.shops.example: clients that check the name will refuse it']],
    ];
    for (const [apps, expected] of cases) {
      const file = join(dir, 'appcert.yaml');
      writeFileSync(file, `${TLS('./one.crt', './one.key')}apps:\n${apps}`);
      const r = await loadConfigFile(file, { mode: 'lint', env: {} });
      assert.deepEqual(r.problems.map((p) => `${p.severity} ${p.line}:${p.col} ${p.path}: ${p.message}`), expected, apps);
    }
    // an http app: its certificate would never be served
    const file = join(dir, 'appcert.yaml');
    writeFileSync(file, `gateway:\n  publicUrl: http://localhost\n  listen: { http: 8080 }\napps:\n${app('Shop', 'http://shop.example/', '{ cert: ./shop.crt, key: ./shop.key }')}`);
    const r = await loadConfigFile(file, { mode: 'lint', env: {} });
    assert.deepEqual(r.problems.map((p) => `${p.severity} ${p.path}: ${p.message}`), ['error apps[0].tls: an app certificate is served by the https listener, and this externalUrl is http']);
    // an app on an IP address: clients send no SNI for one, so its certificate would never be served
    selfSignedCert(dir, 'ipapp', ['127.0.0.1', '::1']);
    for (const [url, ip] of [['https://127.0.0.1:8443/', '127.0.0.1'], ['https://[::1]/', '::1']]) {
      writeFileSync(file, `${TLS('./one.crt', './one.key')}apps:\n${app('Ip', url!, '{ cert: ./ipapp.crt, key: ./ipapp.key }')}`);
      const ipr = await loadConfigFile(file, { mode: 'lint', env: {} });
      assert.deepEqual(
        ipr.problems.map((p) => `${p.severity} ${p.line}:${p.col} ${p.path}: ${p.message}`),
        [`warning 4:16 gateway.tls.cert: the certificate does not cover ${ip}: clients that check the name will refuse it`, `error 10:10 apps[0].tls: clients name no host when they connect to an IP address (SNI carries DNS names only), so this certificate would never be served: they get gateway.tls; publish the app on a DNS name, or put ${ip} in gateway.tls's certificate`],
        url,
      );
    }
  });

  pemCases.forEach((c, i) => {
    it(c.description, async () => {
      const file = join(dir, `pem${i}.yaml`);
      writeFileSync(file, c.yaml);
      const r = await loadConfigFile(file, { mode: 'lint', env: {} });
      const got = r.problems.map((p) => `${p.line}:${p.col} ${p.path} | ${p.message}`);
      assert.deepEqual(
        r.problems.map((p) => `${p.line}:${p.col} ${p.path}`),
        c.errors.map((e) => `${e.at} ${e.path}`),
        got.join('\n'),
      );
      c.errors.forEach((e, j) => assert.ok(r.problems[j]!.severity === 'error' && r.problems[j]!.message.includes(e.message), `${got[j]}\nexpected: ${e.message}`));
    });
  });
});

describe('config lint: warnings', () => {
  const dir = tempDir('drawbridge-lint-warn-');
  const SESSION = `${GW}identity: { issuer: http://127.0.0.1:9000, clientId: drawbridge, clientSecret: s }
session:
  secrets: ["0123456789abcdef0123456789abcdef"]
`;
  const warningCases: { description: string; yaml: string; warnings: Expected[] }[] = [
    {
      description: 'websocketOrigins on an app that takes no WebSockets and has no session cookie',
      yaml: `${GW}apps:
${app('Pass', 'pass.localhost:8080', '    websocketOrigins: [https://ok.example.test]\n')}`,
      warnings: [
        { at: '9:23', path: 'apps[0].websocketOrigins', message: 'ignored: the app does not accept WebSockets (websockets: true)' },
        { at: '9:23', path: 'apps[0].websocketOrigins', message: "ignored: only a session cookie is checked against the page's origin, and a passthrough app has none" },
      ],
    },
    {
      description: 'an app published where publicUrl puts the app portal takes the address: no portal (only with identity: a gateway without sign-in has no portal)',
      yaml: `${SESSION}apps:
${app('Home', 'localhost:8080')}  - name: Sub
    externalUrl: http://localhost:8080/sub/
    internalUrl: http://127.0.0.1:3001/sub/
    preAuth: passthrough
`,
      warnings: [{ at: '9:18', path: 'apps[0].externalUrl', message: 'is where gateway.publicUrl puts the app portal (http://localhost:8080/): the app takes the address, and the gateway serves no portal' }],
    },
    {
      description: 'two prefixes on one host that are one path to IIS (letter case, trailing dots): other spellings go to one of them',
      yaml: `${GW}apps:
  - name: One
    externalUrl: http://iis.localhost:8080/Admin/
    internalUrl: http://127.0.0.1:3001/Admin/
    preAuth: passthrough
  - name: Two
    externalUrl: http://iis.localhost:8080/admin./
    internalUrl: http://127.0.0.1:3001/admin./
    preAuth: passthrough
  - name: Three
    externalUrl: http://other.localhost:8080/admin/
    internalUrl: http://127.0.0.1:3001/admin/
    preAuth: passthrough
`,
      warnings: [{ at: '10:18', path: 'apps[1].externalUrl', message: 'its path differs from that of apps[0] only in letter case or trailing dots: a server that ignores them (IIS) sees one path, and the gateway sends other spellings of it to one of the two apps' }],
    },
    {
      description: 'a revoked entry that is no connector id revokes nothing',
      yaml: `${GW}connectors:
  listen: 8444
  revoked: [c-0123456789ABCDEF, bob]
apps: []
`,
      warnings: [{ at: '6:33', path: 'connectors.revoked[1]', message: '"bob" is not a connector id (c- and 16 hex digits, as `drawbridge connectors` lists them): it revokes no connector the gateway enrolled' }],
    },
    {
      description: "policy paths written for the internal path of an app published under a prefix never match (the prefix is part of the path they see)",
      yaml: `${SESSION}policies:
  block-admin:
    when: { paths: [/admin/**] }
    grant: block
  block-hr-admin:
    when: { paths: [/hr/admin/**, /admin/**] }
    grant: block
apps:
  - name: Hr
    externalUrl: http://intranet.localhost/hr/
    internalUrl: http://127.0.0.1:3001/
    conditionalAccess: [block-admin, block-hr-admin]
  - name: Root
    externalUrl: http://root.localhost/
    internalUrl: http://127.0.0.1:3001/
    conditionalAccess: [block-admin]
`,
      warnings: [
        { at: '9:20', path: 'policies.block-admin.when.paths', message: 'none of these paths can match app Hr, published at /hr/: paths are matched as the client requests them, prefix included (e.g. /hr/admin/**)' },
        { at: '17:18', path: 'apps[0].internalUrl', message: `its path / is not externalUrl's /hr/` },
      ],
    },
    {
      description: 'a policy that can apply to no app (none lists it, its when.apps names none; or an app lists it and its when.apps names only others) is switched off without a word',
      yaml: `${SESSION}policies:
  tenant-wide-block:
    when: { locations: [anywhere] }
    grant: block
  only-b:
    when: { apps: [B] }
    grant: block
  listed:
    when: { methods: [DELETE] }
    grant: block
locations:
  anywhere: [0.0.0.0/0]
apps:
${app('A', 'a.localhost', '    conditionalAccess: [only-b, listed]\n')}${app('B', 'b.localhost')}`,
      warnings: [
        { at: '8:3', path: 'policies.tenant-wide-block', message: 'applies to no app: no app lists it in conditionalAccess and its when.apps names none (a policy is never tenant-wide)' },
        { at: '24:25', path: 'apps[0].conditionalAccess[0]', message: 'policy "only-b" never applies to A: its when.apps names other apps only' },
      ],
    },
    {
      description: "an internal path that is not the external one: root-relative links in the app's pages lead out of it",
      yaml: `${SESSION}apps:
  - name: Hr
    externalUrl: http://intranet.localhost/hr/
    internalUrl: http://127.0.0.1:3001/intranet/hr
  - name: Same
    externalUrl: http://same.localhost/app/
    internalUrl: http://127.0.0.1:3001/app/
`,
      warnings: [{ at: '10:18', path: 'apps[0].internalUrl', message: `its path /intranet/hr/ is not externalUrl's /hr/: links the app writes into its pages as "/intranet/hr/…" are not translated` }],
    },
    {
      description: 'apps on one host with another preAuth or assignment: one browser origin, so each can read the other',
      yaml: `${SESSION}apps:
  - name: Finance
    externalUrl: http://apps.localhost/finance/
    internalUrl: http://127.0.0.1:3001/finance/
    assignment: { groups: [finance] }
  - name: Same
    externalUrl: http://Apps.localhost/finance2/
    internalUrl: http://127.0.0.1:3001/finance2/
    assignment: { groups: [finance] }
  - name: Everyone
    externalUrl: http://apps.localhost/everyone/
    internalUrl: http://127.0.0.1:3001/everyone/
${app('Public', 'apps.localhost')}${app('Elsewhere', 'public.localhost')}`,
      warnings: [
        { at: '17:18', path: 'apps[2].externalUrl', message: "shares host apps.localhost with apps[0], which has another assignment: apps on one host are one browser origin, so a page of either can read the other with the user's session and sign it out" },
        { at: '20:18', path: 'apps[3].externalUrl', message: 'shares host apps.localhost with apps[0], which has preAuth oidc: apps on one host are one browser origin' },
      ],
    },
    {
      description: 'two apps with one audience: a token for one is a token for the other',
      yaml: `${SESSION}apps:
  - name: Payroll
    externalUrl: http://payroll.localhost/
    internalUrl: http://127.0.0.1:3001/
    audience: api://payroll
  - name: Expenses
    externalUrl: http://expenses.localhost/
    internalUrl: http://127.0.0.1:3002/
    audience: api://payroll
`,
      warnings: [{ at: '15:15', path: 'apps[1].audience', message: 'apps[0] has this audience too: a token issued for one of them is accepted by the other' }],
    },
    {
      description: 'sameSite none on a cookie that is not Secure is sent as Lax (session.cookie: once, not per app)',
      yaml: `${SESSION}  cookie: { sameSite: none, secure: false }
apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
`,
      warnings: [{ at: '7:23', path: 'session.cookie.sameSite', message: 'sameSite none needs a Secure cookie (browsers refuse it otherwise): with secure: false the session cookie is sent as SameSite=Lax' }],
    },
    {
      description: "an app's own sameSite none with secure: false",
      yaml: `${SESSION}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    cookies: { sameSite: none, secure: false }
`,
      warnings: [{ at: '11:26', path: 'apps[0].cookies.sameSite', message: "with secure: false this app's session cookie is sent as SameSite=Lax" }],
    },
    {
      description: 'sameSite none on an http app, where no cookie can be Secure',
      yaml: `${SESSION}  cookie: { sameSite: none }
apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
`,
      warnings: [{ at: '10:18', path: 'apps[0].externalUrl', message: "a cookie set over plain http cannot be Secure: this app's session cookie is sent as SameSite=Lax" }],
    },
    {
      description: 'an admin listener on a bare port binds every interface: warned (unauthenticated /metrics and /connectors)',
      yaml: `gateway:
  publicUrl: http://localhost:8080
  listen: { http: 8080 }
  admin: { listen: 9090 }
apps: []
`,
      warnings: [{ at: '4:20', path: 'gateway.admin.listen', message: 'binds every interface: /metrics and /connectors answer without authentication to anyone who can reach it; write 127.0.0.1:9090' }],
    },
    ...['0.0.0.0:9090', '"[::]:9090"'].map((listen) => ({
      description: `admin listen ${listen} binds every interface`,
      yaml: `${GW}  admin: { listen: ${listen} }\napps: []\n`,
      warnings: [{ at: '4:20', path: 'gateway.admin.listen', message: 'binds every interface' }],
    })),
    {
      description: 'admin listen on a public address',
      yaml: `${GW}  admin: { listen: 203.0.113.7:9090 }\napps: []\n`,
      warnings: [{ at: '4:20', path: 'gateway.admin.listen', message: 'binds a public address (203.0.113.7)' }],
    },
    ...['127.0.0.1:9090', '10.1.2.3:9090', '"[::1]:9090"', 'localhost:9090', '"[fd00::5]:9090"'].map((listen) => ({
      description: `admin listen ${listen}: no warning`,
      yaml: `${GW}  admin: { listen: ${listen} }\napps: []\n`,
      warnings: [],
    })),
    {
      description: 'identity and assertion header names with _ or . (nginx, Apache httpd 2.4 CGI and gunicorn drop them: the app never gets the header)',
      yaml: `${SESSION}apps:
  - name: Hello
    externalUrl: http://hello.localhost:8080/
    internalUrl: http://127.0.0.1:3001/
    preAuth: oidc
    headers:
      identity:
        X_Remote_Email: email
        X.Remote.Groups: groups
        X-Remote-User: user
      assertion: X_Drawbridge_Assertion
`,
      warnings: [
        { at: '14:25', path: 'apps[0].headers.identity.X_Remote_Email', message: 'X_Remote_Email has _ in its name: nginx (by default), Apache httpd 2.4 for CGI-style apps (PHP, WSGI) and gunicorn drop such headers, and the app would never get it; write X-Remote-Email' },
        { at: '15:26', path: 'apps[0].headers.identity["X.Remote.Groups"]', message: 'X.Remote.Groups has . in its name' },
        { at: '17:18', path: 'apps[0].headers.assertion', message: 'X_Drawbridge_Assertion has _ in its name' },
      ],
    },
    {
      description: 'sameSite none on a passthrough app sets no cookie: no warning',
      yaml: `${SESSION}  cookie: { sameSite: none }
apps:
${app('Hello', 'hello.localhost:8080')}`,
      warnings: [],
    },
  ];
  warningCases.forEach((c, i) => {
    it(c.description, async () => {
      const file = join(dir, `warn${i}.yaml`);
      writeFileSync(file, c.yaml);
      const r = await loadConfigFile(file, { mode: 'lint', env: {} });
      const got = r.problems.map((p) => `${p.line}:${p.col} ${p.severity} ${p.path} | ${p.message}`);
      assert.ok(r.config, `no errors expected:\n${got.join('\n')}`);
      assert.deepEqual(
        r.problems.map((p) => `${p.line}:${p.col} ${p.path}`),
        c.warnings.map((w) => `${w.at} ${w.path}`),
        got.join('\n'),
      );
      c.warnings.forEach((w, j) => assert.ok(r.problems[j]!.message.includes(w.message), `${got[j]}\nexpected: ${w.message}`));
    });
  });
});
