import { defineStage, NO_OPTIONS } from '../../pipeline/contract.js';
import { AuthStage } from './stage.js';

/** `auth`: the session cookie → the user (or anonymous); the login endpoints. No options. */
export const authStage = defineStage<Record<string, never>>({
  name: 'auth',
  optionsSchema: NO_OPTIONS,
  create: (container) => container.resolve(AuthStage),
});
export { AuthStage };
