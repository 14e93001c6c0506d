import { CidrSet } from '../../config/net.js';
import { PLUGIN_API_VERSION, type Plugin, type RequestContext } from '../../pipeline/stage.js';

export interface ForwardedOptions {
  trustedProxies: string[];
}

/**
 * X-Forwarded-For / -Proto / -Host. The client's own copies were already
 * stripped at the edge; only a peer in trustedProxies may contribute earlier
 * X-Forwarded-For entries and its view of proto and host.
 */
export const forwardedHeaders: Plugin<ForwardedOptions> = {
  name: 'forwarded-headers',
  kind: 'headers',
  apiVersion: PLUGIN_API_VERSION,
  description: 'Sets X-Forwarded-For (client IP appended), X-Forwarded-Proto and X-Forwarded-Host.',
  optionsSchema: {
    type: 'object',
    properties: { trustedProxies: { type: 'array', items: { type: 'string' } } },
    required: ['trustedProxies'],
    additionalProperties: false,
  },
  create(options) {
    const trusted = new CidrSet(options.trustedProxies);
    return {
      name: 'forwarded-headers',
      kind: 'headers',
      run(ctx: RequestContext) {
        const peer = ctx.peerIp;
        const fromTrusted = trusted.size > 0 && trusted.has(peer);
        const prior = fromTrusted ? single(ctx.headers['x-forwarded-for']) : undefined;
        const proto = (fromTrusted && protoOf(single(ctx.headers['x-forwarded-proto']))) || ctx.protocol;
        const host = (fromTrusted && single(ctx.headers['x-forwarded-host'])) || single(ctx.headers.host) || ctx.host;
        return {
          kind: 'continue',
          setHeaders: {
            'x-forwarded-for': prior ? `${prior}, ${peer}` : peer,
            'x-forwarded-proto': proto,
            'x-forwarded-host': host,
          },
        };
      },
    };
  },
};

function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}

function protoOf(v: string | undefined): string | undefined {
  const p = v?.split(',').pop()?.trim().toLowerCase();
  return p === 'http' || p === 'https' ? p : undefined;
}
