// The built-in stages, exits and forward-auth entries, in one place for the outpost to register.
import type { StageDefinition } from '../pipeline/contract.js';
import type { ExitDefinition } from '../pipeline/exits.js';
import type { EntryResolver } from '../pipeline/context.js';
import { authStage } from './auth/index.js';
import { allowlistStage } from './allowlist/index.js';
import { accessRulesStage, ACCESS_RULES_ALIASES } from './access-rules/index.js';
import { headersStage } from './headers/index.js';
import { forwardExit } from './forward/index.js';
import { forwardEntries } from './forward/entries.js';
import { upstreamExit } from './upstream/index.js';

export const builtInStages: readonly StageDefinition<any>[] = [authStage, allowlistStage, accessRulesStage, headersStage];

/** Old names of renamed built-in stages, still accepted in `pipeline:` (with a warning at start). */
export const builtInStageAliases: Readonly<Record<string, string>> = { ...ACCESS_RULES_ALIASES };

/** Where allowed requests go: the proxy to the upstream, the forward-auth answer. */
export const builtInExits: readonly ExitDefinition[] = [upstreamExit, forwardExit];

/** Forward-auth endpoints (nginx, Traefik, Caddy, Envoy). */
export const builtInEntries: readonly EntryResolver[] = forwardEntries;
