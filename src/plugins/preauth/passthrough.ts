import { CONTINUE, PLUGIN_API_VERSION, type Plugin } from '../../pipeline/stage.js';

/** No sign-in: the request goes on without an identity. Location and header rules still apply. */
export const passthrough: Plugin<Record<string, never>> = {
  name: 'passthrough',
  kind: 'preauth',
  apiVersion: PLUGIN_API_VERSION,
  description: 'No pre-authentication.',
  optionsSchema: { type: 'object', additionalProperties: false },
  create: () => ({ name: 'passthrough', kind: 'preauth', run: () => CONTINUE }),
};
