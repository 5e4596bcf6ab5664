import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../src/config/load.js';

const config = (mappings: string, rules = '') => `providers:
  - name: demo
    issuer: https://idp.example.com/application/o/demo/
    client_id: demo
    client_secret: secret
    cookie_secret: 0123456789abcdef0123456789abcdef
    external_host: https://app.example.com
    internal_host: http://127.0.0.1:8080
    mappings:
${mappings}${rules}`;

const parseError = (text: string): ConfigError => {
  try {
    parseConfig(text, { env: {} });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the configuration to be rejected');
};

test('valid mappings and access rules load', () => {
  const parsed = parseConfig(
    config(
      `      - name: per-user backend
        expression: '{"ak_proxy": {"backend_override": "http://backend-" + claims.preferred_username + ":8080"}}'
`,
      `    access_rules:
      - name: admins only
        paths: ['^/admin(/|$)']
        when: '"admins" in claims.groups'
`,
    ),
    { env: {} },
  );
  assert.equal(parsed.providers[0]!.mappings.length, 1);
  assert.equal(parsed.providers[0]!.access_rules.length, 1);
});

test('a broken mapping names the provider, the mapping, the position and the YAML line', () => {
  const err = parseError(
    config(`      - name: fine
        expression: '{"a": 1}'
      - name: per-user backend
        expression: '{"ak_proxy": ++ }'
`),
  );
  assert.equal(err.issues.length, 1);
  const issue = err.issues[0]!;
  assert.equal(issue.code, 'config.invalid_expression');
  assert.equal(issue.field, 'providers[0].mappings[1].expression');
  assert.equal(issue.line, 13);
  assert.match(issue.message, /^provider demo, mapping 'per-user backend', line 1 column \d+: /);
  assert.match(err.message, /line 13/);
});

test('a broken access rule condition is reported at its when field', () => {
  const err = parseError(
    config(
      `      - name: fine
        expression: '{"a": 1}'
`,
      `    access_rules:
      - name: admins only
        when: '"admins" in claims.groups'
      - paths: ['^/x']
        when: 'claims.groups.exists(g, g == "x") &&'
`,
    ),
  );
  assert.equal(err.issues.length, 1);
  const issue = err.issues[0]!;
  assert.equal(issue.code, 'config.invalid_expression');
  assert.equal(issue.field, 'providers[0].access_rules[1].when');
  assert.equal(issue.line, 16);
  assert.match(issue.message, /^provider demo, access rule 'access_rules\[1\]', line 1 column \d+: /);
});

test('every broken expression is reported, not just the first', () => {
  const err = parseError(
    config(`      - name: one
        expression: 'nope'
      - name: two
        expression: '"string"'
`),
  );
  assert.deepEqual(
    err.issues.map((i) => [i.field, i.line]),
    [
      ['providers[0].mappings[0].expression', 11],
      ['providers[0].mappings[1].expression', 13],
    ],
  );
  assert.match(err.issues[1]!.message, /mapping 'two'.*must return a map/);
});
