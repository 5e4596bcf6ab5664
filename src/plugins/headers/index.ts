import { NO_OPTIONS } from '../../pipeline/contract.js';
import { builtInDeps, defineBuiltInStage } from '../../pipeline/built-in.js';
import { HeadersStage } from './stage.js';

/** `headers`: identity headers and the sanitized upstream header set. No options. */
export const headersStage = defineBuiltInStage<Record<string, never>>({
  name: 'headers',
  optionsSchema: NO_OPTIONS,
  reads: ['session', 'headerAuth'],
  writes: ['identityHeaders', 'upstreamHeaders'],
  create: (deps) => new HeadersStage(deps.outpostName, builtInDeps(deps).providers, deps.version, builtInDeps(deps).store),
});
export { HeadersStage };
