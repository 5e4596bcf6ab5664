import { defineStage, NO_OPTIONS } from '../../pipeline/contract.js';
import { UpstreamStage } from './stage.js';
import { registerUpstream } from './plugin.js';

/** `upstream`: chooses the backend (internal_host or backend_override) and proxies to it. No options. */
export const upstreamStage = defineStage<Record<string, never>>({
  name: 'upstream',
  optionsSchema: NO_OPTIONS,
  create: (container) => container.resolve(UpstreamStage),
  fastify: (scope, stage) => registerUpstream(scope, stage as UpstreamStage),
});
export { UpstreamStage };
