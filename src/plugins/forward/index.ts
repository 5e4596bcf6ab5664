import { defineStage, NO_OPTIONS } from '../../pipeline/contract.js';
import { PROVIDERS, SESSION_STORE } from '../../pipeline/tokens.js';
import { ForwardStage } from './stage.js';

/** `forward`: the forward-auth decision (200 + identity headers) for the reverse proxy. No options. */
export const forwardStage = defineStage<Record<string, never>>({
  name: 'forward',
  optionsSchema: NO_OPTIONS,
  create: (container) => new ForwardStage(container.resolve(PROVIDERS), container.resolve(SESSION_STORE)),
});
export { ForwardStage };
