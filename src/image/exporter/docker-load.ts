// --load: hands a docker archive to the local Docker daemon through its API socket (POST /images/load),
// as `docker load` does. The daemon is found as the docker CLI finds it: DOCKER_HOST, else the default socket.

import * as http from 'node:http';
import type { Readable } from 'node:stream';

export function dockerSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const host = env.DOCKER_HOST;
  if (!host) return '/var/run/docker.sock';
  if (host.startsWith('unix://')) return host.slice('unix://'.length);
  throw new Error(`--load supports only unix sockets for DOCKER_HOST, got ${host}`);
}

/** Streams the archive to the daemon; resolves with the daemon's messages ("Loaded image: x:y"). */
export async function loadIntoDocker(archive: Readable, socketPath = dockerSocketPath()): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: '/images/load?quiet=1', method: 'POST', headers: { 'Content-Type': 'application/x-tar' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        if (res.statusCode !== 200) {
          reject(new Error(`docker daemon at ${socketPath} refused the image (HTTP ${res.statusCode}): ${body.trim()}`));
          return;
        }
        // The reply is a stream of JSON messages; an error can arrive inside a 200 reply.
        const messages: string[] = [];
        for (const line of body.split('\n').filter((l) => l.trim())) {
          const msg = JSON.parse(line) as { stream?: string; error?: string; errorDetail?: { message?: string } };
          if (msg.error) return reject(new Error(`docker daemon at ${socketPath}: ${msg.errorDetail?.message ?? msg.error}`));
          if (msg.stream) messages.push(msg.stream.trim());
        }
        resolve(messages);
      });
    });
    req.on('error', (err) => reject(new Error(`cannot reach the docker daemon at ${socketPath}: ${err.message}`)));
    archive.on('error', (err) => req.destroy(err));
    archive.pipe(req);
  });
}
