import { NO_OPTIONS } from '../../pipeline/contract.js';
import { builtInDeps, defineBuiltInStage } from '../../pipeline/built-in.js';
import { AllowlistStage } from './stage.js';

/** `allowlist`: unauthenticated paths (skip_path_regex); CHALLENGE for the rest. No options. */
export const allowlistStage = defineBuiltInStage<Record<string, never>>({
  name: 'allowlist',
  optionsSchema: NO_OPTIONS,
  reads: ['session'],
  // Its CHALLENGE is answered by the request's exit (src/plugins/auth/challenge.ts).
  writes: ['allowlisted'],
  create: (deps) => new AllowlistStage(builtInDeps(deps).providers.all),
});
export { AllowlistStage };
