// A COPY/MOVE Destination read as the request target is: on this host or elsewhere, its path
// normalized by the same rules as a request line's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { destinationOf } from '../../src/http/destination.js';

const here = { scheme: 'https' as const, host: 'app.example.com' };

test('on this host: absolute URLs (any case, default port) and absolute paths, normalized', () => {
  const cases: [string, string, string][] = [
    ['https://app.example.com/dav/a.txt', '/dav/a.txt', ''],
    ['https://APP.example.com:443/dav/a.txt?x=1#frag', '/dav/a.txt', 'x=1'],
    ['HTTPS://app.example.com', '/', ''],
    ['/dav/docs/../admin/a.txt', '/dav/admin/a.txt', ''],
    ['/dav/%61dmin/a.txt', '/dav/admin/a.txt', ''],
  ];
  for (const [value, path, query] of cases) assert.deepEqual(destinationOf(value, here), { kind: 'here', path, query }, value);
});

test('elsewhere: another scheme, host or port, or user info', () => {
  for (const value of ['http://app.example.com/a', 'https://app.example.com:8443/a', 'https://other.example.com/a', 'https://evil@app.example.com/a', 'https://127.0.0.1:8080/a']) {
    assert.equal(destinationOf(value, here).kind, 'elsewhere', value);
  }
});

test('invalid: relative references, other schemes, targets a request line would refuse', () => {
  for (const value of ['../admin/a.txt', 'admin/a.txt', '//app.example.com/a', 'ftp://app.example.com/a', 'javascript:alert(1)', '']) {
    assert.equal(destinationOf(value, here).kind, 'invalid', value);
  }
});
