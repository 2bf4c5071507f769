// Compare two image summaries and describe every difference in lines a person can read.
import { isDeepStrictEqual } from 'node:util';
import type { FsEntry } from './rootfs.js';
import type { HistoryItem, ImageSummary, NormalizedConfig } from './summary.js';

export interface CompareOptions {
  /** Skip the history comparison (a case that proves BuildKit 20.10 records something odd). */
  ignoreHistory?: boolean;
  /** Paths (and everything below them) left out of the rootfs comparison. */
  ignorePaths?: string[];
}

export interface Difference {
  area: 'config' | 'history' | 'rootfs';
  text: string;
}

const CONFIG_FIELDS: (keyof NormalizedConfig)[] = [
  'Env',
  'Cmd',
  'Entrypoint',
  'WorkingDir',
  'User',
  'ExposedPorts',
  'Volumes',
  'Labels',
  'StopSignal',
  'Healthcheck',
  'Shell',
  'OnBuild',
  'Author',
  'architecture',
  'os',
  'variant',
];

function show(v: unknown): string {
  return v === undefined ? '(unset)' : JSON.stringify(v);
}

/**
 * The history text with what differs between BuildKit releases for the same instruction taken out,
 * so that kiln can follow a current BuildKit and still compare with Docker 20.10's (BuildKit 0.8):
 * - EXPOSE: 20.10 prints a Go map ("EXPOSE map[80/tcp:{} 90/udp:{}]"), newer ones a list; only the
 *   ports count.
 * - HEALTHCHECK: a Go struct dump whose fields grow with each release; only the test command counts
 *   (the config comparison checks every duration exactly).
 * - COPY/ADD: current BuildKit writes `--parents`, `--chown=` and `--chmod=` after the instruction
 *   name (dockerfile2llb dispatchCopy); 0.8 wrote none. They are dropped; the rootfs comparison
 *   checks owners and modes exactly.
 * - ARG: current BuildKit writes the value the ARG ends up with (a --build-arg or global value);
 *   0.8 wrote the default as typed. Only the first name counts (values may contain spaces); the
 *   values are checked through the RUN entries' "|N K=V" prefix and the files the cases write.
 * - RUN's "|N K=V" prefix: 0.8 lists an ARG declared twice twice; current BuildKit once. A pair
 *   repeated right after itself is dropped and N recounted. So is a pair among the first N words
 *   equal to an earlier one: an ARG declared again further down (not right after) comes back later
 *   in 0.8's prefix, and 0.8 prints every declaration with the variable's current value, so the
 *   repeat is the same word; current BuildKit's runCommandString keeps the first position only.
 * Everything else (the RUN command, its "# buildkit" suffix, ENV, WORKDIR, ...) is compared as written.
 *
 * Where 0.8 and current BuildKit differ in values rather than in text, kiln follows current BuildKit
 * and the case says so in its `ignore.why` or is left to a unit test:
 * - A global ARG with no default named like an automatic platform arg (ARG TARGETPLATFORM): 0.8
 *   blanked the automatic value, current BuildKit keeps it (fid-platarg-global-nodefault,
 *   test/frontend/platform-args.test.ts).
 * - A COPY source that is not a valid pattern ("[a.txt"): 0.8 treated it as a wildcard matching
 *   nothing, current BuildKit's context checksum fails with "syntax error in pattern", as kiln does
 *   (test/cache/checksum-select.test.ts; no case: Docker 20.10 builds it).
 * - A stage FROM another stage: current BuildKit inherits the base stage's build-arg list
 *   (moby/buildkit c7c2f0e97), so its RUN history has their "|N K=V" prefix; 0.8's has none
 *   (arg-from-parent-stage ignores the history; the values RUN sees are the same).
 * - COPY --chmod: current BuildKit keeps setuid/setgid/sticky of an octal mode (fsutil 7a889f53)
 *   and expands variables in it (22fbeaf78); 0.8 did neither (copy-chmod-octal-forms ignores
 *   those paths, kiln-copy-chmod-special-bits checks them).
 * - RUN --mount: 0.8 left the mount points runc made in the layer; current BuildKit removes the
 *   empty stubs recursively (executor.MountStubsCleaner) (run-mount-bind, run-mount-cache-tmpfs
 *   ignore them, kiln-run-mount-stubs checks they are gone).
 * - HEALTHCHECK: current BuildKit takes 0 durations as the default and --retries=0; 0.8 refused
 *   them (kiln-healthcheck-zero-durations).
 * - WORKDIR of an empty value: current BuildKit keeps the workdir as written, 0.8 cleaned it
 *   (kiln-workdir-empty-var).
 * - .dockerignore exceptions: 0.8 matched each path and its parents against every pattern; current
 *   BuildKit's walk inherits only what the parent directory matched (MatchesUsingParentResults),
 *   so '!dir/' cannot bring back a file an earlier pattern excluded unless dir itself was excluded
 *   (dockerignore-negation ignores that file, kiln-dockerignore-parent-results checks it).
 * - Features 0.8 does not have at all are kiln-only cases: ${v#p} ${v%s} ${v/a/b} and the
 *   colon-less ${v-x} ${v+x} (kiln-var-modifiers), RUN --network (kiln-run-network-none).
 */
export function canonicalCreatedBy(s: string): string {
  if (s.startsWith('EXPOSE ')) {
    const ports = s.match(/\d+(?:-\d+)?\/(?:tcp|udp|sctp)/g) ?? [];
    return 'EXPOSE ' + [...new Set(ports)].sort().join(' ');
  }
  if (s.startsWith('HEALTHCHECK ')) {
    const test = /\[([^\]]*)\]/.exec(s);
    return 'HEALTHCHECK ' + (test ? test[1] : s.slice('HEALTHCHECK '.length));
  }
  const copy = /^(COPY|ADD)((?: --(?:parents|chown=\S*|chmod=\S*))*) /.exec(s);
  if (copy) return `${copy[1]} ${s.slice(copy[0].length)}`;
  if (s.startsWith('ARG ')) {
    // Values may contain spaces, so the text cannot be split into pairs: the first name stands for it.
    return 'ARG ' + /^[^= ]*/.exec(s.slice(4))![0];
  }
  const run = /^RUN \|(\d+) /.exec(s);
  if (run) {
    // Only a pair repeated right after itself is dropped: values may contain spaces, so the prefix
    // cannot be split into pairs in general.
    const words = s.slice(run[0].length).split(' ');
    const n = Number(run[1]);
    const pair = (w: string) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(w);
    const kept = words.filter((w, i) => !(i > 0 && pair(w) && (w === words[i - 1] || (i < n && words.slice(0, i).includes(w)))));
    return `RUN |${Number(run[1]) - (words.length - kept.length)} ${kept.join(' ')}`;
  }
  return s;
}

function compareHistory(docker: HistoryItem[], kiln: HistoryItem[]): Difference[] {
  const out: Difference[] = [];
  const n = Math.max(docker.length, kiln.length);
  for (let i = 0; i < n; i++) {
    const d = docker[i];
    const k = kiln[i];
    if (!d || !k) {
      const [who, item] = d ? ['docker', d] : ['kiln', k!];
      out.push({ area: 'history', text: `[${i}] only in ${who}: ${JSON.stringify(item.createdBy)}${item.emptyLayer ? ' (empty_layer)' : ''}` });
      continue;
    }
    if (canonicalCreatedBy(d.createdBy) !== canonicalCreatedBy(k.createdBy)) {
      out.push({ area: 'history', text: `[${i}] created_by\n      docker: ${JSON.stringify(d.createdBy)}\n      kiln:   ${JSON.stringify(k.createdBy)}` });
    }
    // 0.8 commits a layer for a filesystem step that changed nothing (copied-up directories);
    // kiln, as the issue asks, writes an empty_layer entry instead. Only that direction is
    // forgiven, and only for filesystem steps: the rootfs comparison shows any real change lost.
    const forgivenEmpty = !d.emptyLayer && k.emptyLayer && /^(RUN|COPY|ADD|WORKDIR) /.test(d.createdBy);
    if (d.emptyLayer !== k.emptyLayer && !forgivenEmpty) {
      out.push({ area: 'history', text: `[${i}] ${JSON.stringify(d.createdBy)}: empty_layer docker=${d.emptyLayer} kiln=${k.emptyLayer}` });
    }
  }
  return out;
}

export function describeEntry(e: FsEntry): string {
  const parts = [e.type, e.mode, `${e.uid}:${e.gid}`];
  if (e.type === 'file') parts.push(`${e.size}B`, `sha256:${e.sha256?.slice(0, 12)}`);
  if (e.link !== undefined) parts.push(`-> ${e.link}`);
  if (e.dev) parts.push(`dev ${e.dev}`);
  if (e.hardlinks) parts.push(`hardlinked with ${e.hardlinks.join(',')}`);
  if (e.xattrs) parts.push(`xattrs ${Object.keys(e.xattrs).join(',')}`);
  if (e.implicit) parts.push('(no entry of its own: parent made implicitly)');
  return parts.join(' ');
}

const ENTRY_FIELDS: (keyof FsEntry)[] = ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'link', 'hardlinks', 'dev', 'xattrs', 'implicit'];

function under(p: string, roots: string[]): boolean {
  return roots.some((r) => p === r || p.startsWith(r === '/' ? '/' : r + '/'));
}

function compareRootfs(docker: FsEntry[], kiln: FsEntry[], ignore: string[]): Difference[] {
  const d = new Map(docker.filter((e) => !under(e.path, ignore)).map((e) => [e.path, e]));
  const k = new Map(kiln.filter((e) => !under(e.path, ignore)).map((e) => [e.path, e]));
  const paths = [...new Set([...d.keys(), ...k.keys()])].sort();
  const out: Difference[] = [];
  // A whole subtree missing on one side is one line, not one per file.
  let collapsed: { root: string; side: 'docker' | 'kiln'; count: number } | undefined;
  const flush = (): void => {
    if (collapsed && collapsed.count > 0) {
      const last = out[out.length - 1];
      last.text += ` (and ${collapsed.count} more below it)`;
    }
    collapsed = undefined;
  };
  for (const p of paths) {
    const de = d.get(p);
    const ke = k.get(p);
    if (de && ke) {
      flush();
      const fields = ENTRY_FIELDS.filter((f) => !isDeepStrictEqual(de[f], ke[f]));
      if (fields.length > 0) {
        out.push({ area: 'rootfs', text: `~ ${p}: ${fields.map((f) => `${f} docker=${show(de[f])} kiln=${show(ke[f])}`).join('; ')}` });
      }
      continue;
    }
    const side = de ? 'docker' : 'kiln';
    if (collapsed && collapsed.side === side && p.startsWith(collapsed.root + '/')) {
      collapsed.count++;
      continue;
    }
    flush();
    const e = (de ?? ke)!;
    out.push({ area: 'rootfs', text: `${de ? '-' : '+'} ${p}: only in ${side} (${describeEntry(e)})` });
    if (e.type === 'dir') collapsed = { root: p, side, count: 0 };
  }
  flush();
  return out;
}

export function compareSummaries(docker: ImageSummary, kiln: ImageSummary, opts: CompareOptions = {}): Difference[] {
  const out: Difference[] = [];
  for (const f of CONFIG_FIELDS) {
    if (!isDeepStrictEqual(docker.config[f], kiln.config[f])) {
      out.push({ area: 'config', text: `${f}\n      docker: ${show(docker.config[f])}\n      kiln:   ${show(kiln.config[f])}` });
    }
  }
  if (!opts.ignoreHistory) out.push(...compareHistory(docker.history, kiln.history));
  out.push(...compareRootfs(docker.rootfs, kiln.rootfs, opts.ignorePaths ?? []));
  return out;
}

/** A report of the differences, at most `limit` lines per area, for a failed test's message. */
export function formatDifferences(diffs: Difference[], limit = 40): string {
  const lines: string[] = [];
  for (const area of ['config', 'history', 'rootfs'] as const) {
    const mine = diffs.filter((d) => d.area === area);
    if (mine.length === 0) continue;
    lines.push(`${area}: ${mine.length} difference${mine.length === 1 ? '' : 's'} (docker is the reference)`);
    for (const d of mine.slice(0, limit)) lines.push('  ' + d.text);
    if (mine.length > limit) lines.push(`  ... and ${mine.length - limit} more`);
  }
  return lines.join('\n');
}
