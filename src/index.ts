/** Public API for plugin authors and embedders. */
export type { Plugin, PluginContext, Stage, StageKind, Decision, RequestContext, Identity, StepUp } from './pipeline/stage.js';
export { PLUGIN_API_VERSION, STAGE_KINDS, CONTINUE } from './pipeline/stage.js';
export { DrawbridgeError } from './errors.js';
