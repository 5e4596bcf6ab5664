// The configuration entry point: loading plus every check that compiles things at load
// (scope-mapping and access-rule expressions register theirs on import).
import '../mappings/config-check.js';
export { loadConfigFile, parseConfig, ConfigError, formatIssue, type ConfigIssue } from './load.js';
export type { PortcullisConfig, ProviderConfig, OutpostConfig } from './schema.js';
