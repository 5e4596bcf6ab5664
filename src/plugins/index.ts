// The built-in stages and forward-auth entries, in one place for the outpost to register.
import type { StageDefinition } from '../pipeline/contract.js';
import type { EntryResolver } from '../pipeline/context.js';
import { authStage } from './auth/index.js';
import { allowlistStage } from './allowlist/index.js';
import { mappingsStage } from './mappings/index.js';
import { headersStage } from './headers/index.js';
import { forwardStage } from './forward/index.js';
import { forwardEntries } from './forward/entries.js';
import { upstreamStage } from './upstream/index.js';

export const builtInStages: readonly StageDefinition<any>[] = [authStage, allowlistStage, mappingsStage, headersStage, forwardStage, upstreamStage];

/** Forward-auth endpoints (nginx, Traefik, Caddy, Envoy). */
export const builtInEntries: readonly EntryResolver[] = forwardEntries;
