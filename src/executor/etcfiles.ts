// The two files every RUN sees but no layer keeps: /etc/hosts and /etc/resolv.conf (as BuildKit,
// which leaves /etc/hostname to the image).
// They are written into the bundle directory and bind-mounted read-only over the rootfs.

import * as fsp from 'node:fs/promises';

export function hostsFile(hostname: string, extra: { host: string; ip: string }[] = []): string {
  const lines = [`127.0.0.1\tlocalhost ${hostname}`, '::1\tlocalhost ip6-localhost ip6-loopback'];
  for (const e of extra) {
    if (/[\s#]/.test(e.host) || /[\s#]/.test(e.ip) || e.host === '' || e.ip === '') {
      throw new Error(`invalid extra host ${JSON.stringify(e.host)}=${JSON.stringify(e.ip)}`);
    }
    lines.push(`${e.ip}\t${e.host}`);
  }
  return lines.join('\n') + '\n';
}

/** The host's resolv.conf, or a loopback resolver when the host has none we can read. */
export async function resolvConf(hostFile = '/etc/resolv.conf'): Promise<string> {
  try {
    const text = await fsp.readFile(hostFile, 'utf8');
    if (/^\s*nameserver\s+\S+/m.test(text)) return text.endsWith('\n') ? text : text + '\n';
  } catch {
    // fall through to the fallback
  }
  return 'nameserver 127.0.0.1\n';
}

export function validateHostname(hostname: string): void {
  // RFC 1123 labels; the kernel takes up to 64 bytes.
  if (hostname.length === 0 || hostname.length > 63 || !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(hostname)) {
    throw new Error(`invalid hostname ${JSON.stringify(hostname)}`);
  }
}
