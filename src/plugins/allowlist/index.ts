import { NO_OPTIONS } from '../../pipeline/contract.js';
import { builtInDeps, defineBuiltInStage } from '../../pipeline/built-in.js';
import { AllowlistStage } from './stage.js';

/** `allowlist`: unauthenticated paths (skip_path_regex) and the login challenge. No options. */
export const allowlistStage = defineBuiltInStage<Record<string, never>>({
  name: 'allowlist',
  optionsSchema: NO_OPTIONS,
  reads: ['session', 'headerAuth', 'sessionUnavailable'],
  // setCookies: the Traefik/Caddy/Envoy challenge begins the login (its flow cookie).
  writes: ['allowlisted', 'setCookies'],
  create: (deps) => new AllowlistStage(builtInDeps(deps).providers.all, deps.logger),
});
export { AllowlistStage };
