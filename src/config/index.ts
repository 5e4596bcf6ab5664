// The configuration entry point: loading, validating and compiling (regexes, CEL) a config file.
export { loadConfigFile, parseConfig, ConfigError, formatIssue, type ConfigIssue } from './load.js';
export type { PortcullisConfig, ProviderConfig, OutpostConfig } from './schema.js';
