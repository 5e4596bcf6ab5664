// The API for programs that embed the outpost, `import { Outpost, loadConfigFile } from
// 'portcullis/embed'`: the server, the config loader and their types. Kept out of the stage
// contract ('portcullis', src/index.ts), whose declarations must not drag these modules in.
export * from './index.js';
export { loadConfigFile, parseConfig, ConfigError } from './config/index.js';
export type { PortcullisConfig, ProviderConfig } from './config/index.js';
export { Outpost, type OutpostOptions } from './server/outpost.js';
export type { SessionStore } from './sessions/store.js';
