import { defineStage } from '../../pipeline/contract.js';
import { AuthStage } from './stage.js';

/** `auth`: the session cookie → the user (or anonymous); the login endpoints. No options. */
export const authStage = defineStage<Record<string, never>>({
  name: 'auth',
  create: (container) => container.resolve(AuthStage),
});
export { AuthStage };
