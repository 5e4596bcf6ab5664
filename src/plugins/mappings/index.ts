import { NO_OPTIONS } from '../../pipeline/contract.js';
import { builtInDeps, defineBuiltInStage } from '../../pipeline/built-in.js';
import { MappingsStage } from './stage.js';

/** `mappings`: access rules over the session's claims (mappings themselves run at login). No options. */
export const mappingsStage = defineBuiltInStage<Record<string, never>>({
  name: 'mappings',
  optionsSchema: NO_OPTIONS,
  reads: ['session'],
  writes: [],
  create: (deps) => new MappingsStage(builtInDeps(deps).providers.all, deps.logger),
});
export { MappingsStage };
