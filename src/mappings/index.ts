// Scope mappings and access rules written in CEL (the ak_proxy claims are validated in
// src/oidc/proxy-claims.ts). One entry point for both.
export { compileMapping, compileMappings, mappingsOf, deepMerge, type CompiledMapping, type CompiledMappings, type MappingInput } from './scope-mappings.js';
export { compileAccessRule, compileAccessRules, accessRulesOf, accessRuleLabel, AccessRulePathError, type CompiledAccessRule, type CompiledAccessRules } from './access-rules.js';
export { MappingCompileError, MappingEvaluationError, MAX_EXPRESSION_LENGTH, MAX_RESULT_JSON_LENGTH, MAX_COMPREHENSION_NESTING, CEL_LIMITS } from './cel.js';
