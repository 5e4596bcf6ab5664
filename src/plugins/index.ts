// The built-in stages, exits and doors, in one place for the outpost to register.
import type { StageDefinition } from '../pipeline/contract.js';
import type { ExitDefinition } from '../pipeline/exits.js';
import type { DoorDefinition } from '../pipeline/doors.js';
import type { ActionResolver } from '../pipeline/context.js';
import { authStage, loginActionOf, loginDoors, loginExit } from './auth/index.js';
import { allowlistStage } from './allowlist/index.js';
import { accessRulesStage, ACCESS_RULES_ALIASES } from './access-rules/index.js';
import { headersStage } from './headers/index.js';
import { forwardExit } from './forward/index.js';
import { forwardDoors } from './forward/doors.js';
import { upstreamExit } from './upstream/index.js';
import { proxyDoor } from './upstream/door.js';

export const builtInStages: readonly StageDefinition<any>[] = [authStage, allowlistStage, accessRulesStage, headersStage];

/** Old names of renamed built-in stages, still accepted in `pipeline:` (with a warning at start). */
export const builtInStageAliases: Readonly<Record<string, string>> = { ...ACCESS_RULES_ALIASES };

/** Where requests go: the proxy to the upstream, the forward-auth answer, the login endpoints. */
export const builtInExits: readonly ExitDefinition[] = [upstreamExit, forwardExit, loginExit];

/** How requests come in: the proxy's catch-all, the forward-auth endpoints, the login endpoints. */
export const builtInDoors: readonly DoorDefinition[] = [proxyDoor, forwardDoors, loginDoors];

/** What a request asks of Portcullis itself (its login endpoints and signatures). */
export const builtInActions: ActionResolver = loginActionOf;

