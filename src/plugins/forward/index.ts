import type { ExitDefinition } from '../../pipeline/exits.js';
import { LOGGER, PROVIDERS, SESSION_STORE } from '../../pipeline/tokens.js';
import { ForwardExit } from './exit.js';

/** `forward`: the forward-auth decision (200 + identity headers) for the reverse proxy that asked. */
export const forwardExit: ExitDefinition = {
  name: 'forward',
  create: (container) => new ForwardExit(container.resolve(PROVIDERS), container.resolve(SESSION_STORE), container.resolve(LOGGER)),
};
export { ForwardExit };
