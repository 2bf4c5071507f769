// The Kubernetes manifests under deploy/kubernetes/, checked offline against the Kubernetes API's
// schemas (the kubernetes-models classes validate with the OpenAPI definitions they carry), and
// the invariants the daemon needs: privileged, a persistent root at /var/lib/kiln, /_ping probes.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { StatefulSet } from 'kubernetes-models/apps/v1';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/server/config.js';
import { killStarted, REPO, startDaemon } from '../helpers/daemon.js';
import { tmpDir } from '../helpers/env.js';

const DIR = path.join(REPO, 'deploy', 'kubernetes');
afterAll(killStarted);

const MODELS: Record<string, new (obj: never) => { validate(): void }> = {
  'apps/v1/StatefulSet': StatefulSet,
  'v1/Service': Service,
  'v1/Secret': Secret,
  'v1/ConfigMap': ConfigMap,
};

interface Doc {
  file: string;
  obj: Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string } };
}

function documents(): Doc[] {
  const out: Doc[] = [];
  for (const file of fs
    .readdirSync(DIR)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()) {
    for (const doc of parseAllDocuments(fs.readFileSync(path.join(DIR, file), 'utf8'))) {
      if (doc.errors.length) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      const obj = doc.toJS() as Doc['obj'] | null;
      if (obj) out.push({ file, obj });
    }
  }
  return out;
}

function one<T>(docs: Doc[], kind: string): T {
  const found = docs.filter((d) => d.obj.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0]!.obj as T;
}

type Probe = { exec?: { command: string[] } };
type Container = {
  args: string[];
  securityContext: { privileged: boolean };
  readinessProbe: Probe;
  livenessProbe: Probe;
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  volumeMounts: { name: string; mountPath: string; subPath?: string }[];
  ports: { name: string; containerPort: number }[];
};
type Sts = {
  spec: {
    serviceName: string;
    template: { spec: { containers: Container[]; volumes: { name: string; secret?: { secretName: string }; configMap?: { name: string } }[] } };
    volumeClaimTemplates: { metadata: { name: string } }[];
  };
};

describe('deploy/kubernetes', () => {
  const docs = documents();

  it('every document validates against its Kubernetes API schema', () => {
    expect(docs.length).toBeGreaterThanOrEqual(4);
    for (const { file, obj } of docs) {
      const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
      expect(Model, `${file}: no model for ${obj.apiVersion} ${obj.kind}`).toBeDefined();
      expect(() => new Model!(obj as never).validate(), `${file}: ${obj.kind} ${obj.metadata.name}`).not.toThrow();
    }
    // The validation is real: a wrong type, deep in the pod template too, is caught.
    const bad = structuredClone(one<Sts & Doc['obj']>(docs, 'StatefulSet')) as unknown as { spec: { replicas: unknown } };
    bad.spec.replicas = 'two';
    expect(() => new StatefulSet(bad as never).validate()).toThrow();
    const deep = structuredClone(one<Sts & Doc['obj']>(docs, 'StatefulSet')) as unknown as {
      spec: { template: { spec: { containers: { securityContext: { privileged: unknown } }[] } } };
    };
    deep.spec.template.spec.containers[0]!.securityContext.privileged = 'yes';
    expect(() => new StatefulSet(deep as never).validate()).toThrow();
  });

  it('the daemon: privileged, its root on a claim at /var/lib/kiln, TLS from the Secret, probes on /_ping', () => {
    const sts = one<Sts>(docs, 'StatefulSet');
    const svc = one<{ metadata: { name: string }; spec: { clusterIP: string; ports: { port: number; targetPort: string }[] } }>(docs, 'Service');
    const secret = one<{ metadata: { name: string }; stringData: Record<string, string> }>(docs, 'Secret');
    const cm = one<{ metadata: { name: string }; data: Record<string, string> }>(docs, 'ConfigMap');
    const [c] = sts.spec.template.spec.containers;
    expect(c!.securityContext.privileged).toBe(true);

    // One persistent root per pod.
    const claims = sts.spec.volumeClaimTemplates.map((v) => v.metadata.name);
    const rootMount = c!.volumeMounts.find((m) => m.mountPath === '/var/lib/kiln');
    expect(rootMount && claims).toContain(rootMount!.name);
    expect(c!.args).toContain('--root=/var/lib/kiln');

    // TCP with TLS from the Secret's files, plus the pod-local socket the probes use.
    expect(c!.args[0]).toBe('daemon');
    expect(c!.args).toContain('--addr=tcp://0.0.0.0:1234');
    expect(c!.args).toContain('--addr=unix:///run/kiln/kiln.sock');
    const tlsVolume = sts.spec.template.spec.volumes.find((v) => v.secret?.secretName === secret.metadata.name);
    const tlsDir = c!.volumeMounts.find((m) => m.name === tlsVolume?.name)?.mountPath;
    expect(tlsDir).toBeDefined();
    for (const [flag, key] of [
      ['--tlscacert', 'ca.pem'],
      ['--tlscert', 'cert.pem'],
      ['--tlskey', 'key.pem'],
    ]) {
      expect(c!.args).toContain(`${flag}=${tlsDir}/${key}`);
      expect(Object.keys(secret.stringData)).toContain(key);
    }

    // daemon.json from the ConfigMap, and kiln reads it.
    const cmVolume = sts.spec.template.spec.volumes.find((v) => v.configMap?.name === cm.metadata.name);
    expect(c!.volumeMounts.find((m) => m.name === cmVolume?.name)).toMatchObject({ mountPath: '/etc/kiln/daemon.json', subPath: 'daemon.json' });
    expect(c!.args).toContain('--config=/etc/kiln/daemon.json');

    // Probes ask /_ping on the socket the daemon serves.
    for (const probe of [c!.readinessProbe, c!.livenessProbe]) {
      const script = probe.exec!.command.join(' ');
      expect(script).toContain("socketPath:'/run/kiln/kiln.sock'");
      expect(script).toContain("path:'/_ping'");
    }
    expect(c!.readinessProbe.exec!.command.join(' ')).toContain("b==='OK'");
    expect(c!.resources.requests.cpu && c!.resources.limits.memory).toBeTruthy();

    // The headless Service names the pods, on the container's port.
    expect(sts.spec.serviceName).toBe(svc.metadata.name);
    expect(svc.spec.clusterIP).toBe('None');
    expect(c!.ports.find((p) => p.name === svc.spec.ports[0]!.targetPort)?.containerPort).toBe(1234);
  });

  it("the probes answer as they should against a real daemon, and the ConfigMap's daemon.json is a config kiln accepts", async () => {
    const [c] = one<Sts>(docs, 'StatefulSet').spec.template.spec.containers;
    for (const probe of [c!.readinessProbe, c!.livenessProbe]) {
      const [node, flag, script] = probe.exec!.command;
      expect([node, flag]).toEqual(['node', '-e']);
      expect(() => new Function('require', script!)).not.toThrow();
    }
    // Run for real against a daemon: ready and alive when it serves; neither when nothing listens.
    const d = await startDaemon();
    try {
      for (const probe of [c!.readinessProbe, c!.livenessProbe]) {
        const [node, flag, script] = probe.exec!.command;
        const run = (socket: string) =>
          spawnSync(node === 'node' ? process.execPath : node!, [flag!, script!.replace('/run/kiln/kiln.sock', socket)], { timeout: 10_000 }).status;
        expect(run(d.socket)).toBe(0);
        expect(run(`${d.socket}.absent`)).toBe(1);
      }
    } finally {
      await d.stop();
      fs.rmSync(path.dirname(d.socket), { recursive: true, force: true });
    }
    const dir = await tmpDir('kiln-k8s-');
    const file = path.join(dir, 'daemon.json');
    fs.writeFileSync(file, one<{ data: Record<string, string> }>(docs, 'ConfigMap').data['daemon.json']!);
    const config = loadConfig({ KILN_CONFIG: file });
    expect(config.cache?.from).toEqual([{ type: 'registry', ref: 'registry.example.com/kiln-cache/shared:latest' }]);
    expect(config.cache?.to).toEqual([{ type: 'registry', ref: 'registry.example.com/kiln-cache/shared:latest', mode: 'max' }]);
  });
});
