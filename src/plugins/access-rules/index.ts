import { NO_OPTIONS } from '../../pipeline/contract.js';
import { builtInDeps, defineBuiltInStage } from '../../pipeline/built-in.js';
import { AccessRulesStage } from './stage.js';

/** `access_rules`: the provider's access rules over the session's claims (scope mappings run in `auth`). No options. */
export const accessRulesStage = defineBuiltInStage<Record<string, never>>({
  name: 'access_rules',
  optionsSchema: NO_OPTIONS,
  reads: ['session'],
  writes: [],
  create: (deps) => new AccessRulesStage(builtInDeps(deps).providers.all, deps.logger),
});

/**
 * The stage's name before it was called what it does: `stage: mappings` in an existing
 * `pipeline:` keeps working, and the start-up log says to rename it.
 */
export const ACCESS_RULES_ALIASES = { mappings: 'access_rules' } as const;
export { AccessRulesStage };
