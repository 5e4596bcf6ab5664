import { defineStage, NO_OPTIONS } from '../../pipeline/contract.js';
import { ForwardStage } from './stage.js';

/** `forward`: the forward-auth decision (200 + identity headers) for the reverse proxy. No options. */
export const forwardStage = defineStage<Record<string, never>>({
  name: 'forward',
  optionsSchema: NO_OPTIONS,
  create: () => new ForwardStage(),
});
export { ForwardStage };
