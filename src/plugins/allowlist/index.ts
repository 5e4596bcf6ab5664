import { defineStage, NO_OPTIONS } from '../../pipeline/contract.js';
import { AllowlistStage } from './stage.js';

/** `allowlist`: unauthenticated paths (skip_path_regex) and the login challenge. No options. */
export const allowlistStage = defineStage<Record<string, never>>({
  name: 'allowlist',
  optionsSchema: NO_OPTIONS,
  create: (container) => container.resolve(AllowlistStage),
});
export { AllowlistStage };
