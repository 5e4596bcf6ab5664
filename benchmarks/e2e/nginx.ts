// Scenario 8: nginx proxy_pass to the same upstream (a C reference). One worker process
// (`master_process off`), so that it gets one core like the Node servers and its RSS is one
// process; upstream keep-alive on, access log off.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startProgram, type Child } from '../lib/proc.js';

export function nginxBinary(): string | null {
  for (const cmd of ['nginx', '/usr/sbin/nginx']) if (!spawnSync(cmd, ['-v'], { stdio: 'ignore' }).error) return cmd;
  return null;
}

export async function startNginx(upstreamPort: number): Promise<Child> {
  const bin = nginxBinary();
  if (!bin) throw new Error('nginx is not installed');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-nginx-'));
  for (const d of ['client', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d));
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'client')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 128; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
    }
  }
}
`,
  );
  const child = await startProgram('nginx', bin, ['-p', dir, '-c', conf], port);
  return {
    ...child,
    stop: async () => {
      await child.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
