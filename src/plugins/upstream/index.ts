import type { ExitDefinition } from '../../pipeline/exits.js';
import { UpstreamExit } from './exit.js';

/** `upstream`: chooses the backend (internal_host or backend_override) and proxies to it. */
export const upstreamExit: ExitDefinition = {
  name: 'upstream',
  create: (container) => container.resolve(UpstreamExit),
};
export { UpstreamExit };
