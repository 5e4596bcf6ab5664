// Compiles every provider's CEL mappings and access-rule conditions when the configuration is
// loaded, so that a broken expression stops the start (and `portcullis --check`) with its line.
// Imported for its side effect; exports nothing.
import { registerConfigCheck } from '../config/load.js';
import { MappingCompileError, compileExpression, mappingEnvironment, ruleEnvironment } from './cel.js';
import { accessRuleLabel } from './index.js';

function describe(err: unknown): string {
  if (err instanceof MappingCompileError) {
    return `${err.position ? `line ${err.position.line} column ${err.position.column}: ` : ''}${err.detail}`;
  }
  return err instanceof Error ? err.message : String(err);
}

registerConfigCheck((config, report) => {
  config.providers.forEach((provider, i) => {
    (provider.mappings ?? []).forEach((mapping, j) => {
      try {
        compileExpression(mappingEnvironment(), mapping.name, mapping.expression, 'map');
      } catch (err) {
        report(['providers', i, 'mappings', j, 'expression'], 'config.invalid_expression', `provider ${provider.name}, mapping '${mapping.name}', ${describe(err)}`);
      }
    });
    // Bad `paths` regexes are already reported by the loader (config.invalid_regex).
    (provider.access_rules ?? []).forEach((rule, r) => {
      const label = accessRuleLabel(rule, r);
      try {
        compileExpression(ruleEnvironment(), label, rule.when, 'bool');
      } catch (err) {
        report(['providers', i, 'access_rules', r, 'when'], 'config.invalid_expression', `provider ${provider.name}, access rule '${label}', ${describe(err)}`);
      }
    });
  });
});
