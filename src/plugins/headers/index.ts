import { defineStage, NO_OPTIONS } from '../../pipeline/contract.js';
import { HeadersStage } from './stage.js';

/** `headers`: identity headers and the sanitized upstream header set. No options. */
export const headersStage = defineStage<Record<string, never>>({
  name: 'headers',
  optionsSchema: NO_OPTIONS,
  create: (container) => container.resolve(HeadersStage),
});
export { HeadersStage };
