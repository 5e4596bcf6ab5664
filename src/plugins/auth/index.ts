import { NO_OPTIONS } from '../../pipeline/contract.js';
import { builtInDeps, defineBuiltInStage } from '../../pipeline/built-in.js';
import type { ExitDefinition } from '../../pipeline/exits.js';
import { AuthStage } from './stage.js';
import { LoginExit } from './exit.js';

/** `auth`: the session cookie (or a bearer token) → the user, or anonymous. No options. */
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

/** `login`: the login endpoints, served with the auth stage's lookup (which buildChain guarantees: auth comes first). */
export const loginExit: ExitDefinition = {
  name: 'login',
  create(_container, chain) {
    const auth = chain.find((b) => b.stage instanceof AuthStage)?.stage as AuthStage | undefined;
    if (auth === undefined) throw new Error('the login exit needs the built-in auth stage in the chain');
    return new LoginExit(auth, auth.websockets);
  },
};
export { AuthStage, LoginExit };
export { loginDoors } from './exit.js';
export { loginActionOf, LOGIN_ENDPOINTS } from './endpoints.js';
