import { defineStage, NO_OPTIONS } from '../../pipeline/contract.js';
import { MappingsStage } from './stage.js';

/** `mappings`: access rules over the session's claims (mappings themselves run at login). No options. */
export const mappingsStage = defineStage<Record<string, never>>({
  name: 'mappings',
  optionsSchema: NO_OPTIONS,
  create: (container) => container.resolve(MappingsStage),
});
export { MappingsStage };
