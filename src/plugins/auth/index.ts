import { NO_OPTIONS } from '../../pipeline/contract.js';
import { builtInDeps, defineBuiltInStage } from '../../pipeline/built-in.js';
import { AuthStage } from './stage.js';

/** `auth`: the session cookie → the user (or anonymous); the login endpoints. No options. */
export const authStage = defineBuiltInStage<Record<string, never>>({
  name: 'auth',
  optionsSchema: NO_OPTIONS,
  reads: [],
  writes: ['session', 'headerAuth', 'sessionUnavailable', 'setCookies'],
  create: (deps) => {
    const internal = builtInDeps(deps);
    return new AuthStage(internal.providers, internal.store, deps.logger, internal.events, internal.websockets);
  },
});
export { AuthStage };
