// RUN --mount=type=...,k=v parsing and validation (BuildKit's commands_runmount.go semantics),
// with the defaults BuildKit applies when converting mounts (convert_runmount / secrets / ssh).

import { fail } from './errors.js';
import { parseUint } from './gofmt.js';

export type MountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';

export interface ParsedMount {
  type: MountType;
  from?: string;
  source?: string;
  target?: string;
  readonly: boolean;
  id?: string;
  sharing?: 'shared' | 'private' | 'locked';
  required: boolean;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  env?: string;
}

const mountTypes = new Set(['bind', 'cache', 'tmpfs', 'secret', 'ssh']);
const sharingTypes = new Set(['shared', 'private', 'locked']);
const allKeys = [
  'type',
  'from',
  'source',
  'target',
  'readonly',
  'id',
  'sharing',
  'required',
  'mode',
  'uid',
  'gid',
  'size',
  'env',
  'src',
  'dst',
  'destination',
  'ro',
  'rw',
  'readwrite',
];

/** One CSV record, like Go's encoding/csv for a single line. */
export function parseCSVLine(s: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (s[i] === '"') {
      i++;
      for (;;) {
        if (i >= s.length) fail(`failed to parse csv mounts: extraneous or missing " in quoted-field`);
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += s[i++];
      }
      if (i < s.length && s[i] !== ',') fail(`failed to parse csv mounts: extraneous or missing " in quoted-field`);
    } else {
      while (i < s.length && s[i] !== ',') {
        if (s[i] === '"') fail(`failed to parse csv mounts: bare " in non-quoted-field`);
        field += s[i++];
      }
    }
    fields.push(field);
    if (i >= s.length) return fields;
    i++; // the comma
  }
}

function parseBool(key: string, v: string): boolean {
  // Go's strconv.ParseBool
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  fail(`invalid value for ${key}: ${v}`);
}

/** docker/go-units RAMInBytes: "64m", "1.5g", "512k" (binary multiples). */
export function parseRAMInBytes(s: string): number {
  const m = /^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$/.exec(s);
  if (!m) fail(`invalid size: '${s}'`);
  const mult: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };
  const n = parseFloat(m[1]);
  return Math.floor(n * (m[2] ? mult[m[2].toLowerCase()] : 1));
}

/**
 * Parses one --mount value. `expand` expands a value with the stage's variables (every value is
 * expanded except `from`, which BuildKit resolves before variables are known).
 */
export function parseMount(value: string, expand: (s: string) => string): ParsedMount {
  const fields = parseCSVLine(value);
  const m: ParsedMount = { type: 'bind', readonly: true, required: false };
  let roAuto = true;
  for (const field of fields) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    if (eq < 0) {
      if (key === 'readonly' || key === 'ro') {
        m.readonly = true;
        roAuto = false;
        continue;
      }
      if (key === 'readwrite' || key === 'rw') {
        m.readonly = false;
        roAuto = false;
        continue;
      }
      if (key === 'required') {
        if (m.type !== 'secret' && m.type !== 'ssh') fail(`unexpected key '${key}' for mount type '${m.type}'`);
        m.required = true;
        continue;
      }
      fail(`invalid field '${field}' must be a key=value pair`);
    }
    let v = field.slice(eq + 1);
    if (key === 'from') {
      if (/\$./.test(v)) fail(`'from' doesn't support variable expansion, define alias stage instead`);
    } else {
      v = expand(v);
    }
    switch (key) {
      case 'type':
        if (!mountTypes.has(v.toLowerCase())) fail(`unsupported mount type "${v}"`);
        m.type = v.toLowerCase() as MountType;
        break;
      case 'from':
        m.from = v;
        break;
      case 'source':
      case 'src':
        m.source = v;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        m.target = v;
        break;
      case 'readonly':
      case 'ro':
        m.readonly = parseBool(key, v);
        roAuto = false;
        break;
      case 'readwrite':
      case 'rw':
        m.readonly = !parseBool(key, v);
        roAuto = false;
        break;
      case 'required':
        if (m.type !== 'secret' && m.type !== 'ssh') fail(`unexpected key '${key}' for mount type '${m.type}'`);
        m.required = parseBool(key, v);
        break;
      case 'id':
        m.id = v;
        break;
      case 'sharing':
        if (!sharingTypes.has(v.toLowerCase())) fail(`unsupported sharing value "${v}"`);
        m.sharing = v.toLowerCase() as ParsedMount['sharing'];
        break;
      case 'mode': {
        const n = parseUint(v, 8, 32);
        if (n === undefined) fail(`invalid value ${v} for mode`);
        m.mode = n;
        break;
      }
      case 'uid':
      case 'gid': {
        const n = parseUint(v, 10, 32);
        if (n === undefined) fail(`invalid value ${v} for ${key}`);
        m[key] = n;
        break;
      }
      case 'size':
        if (m.type !== 'tmpfs') fail(`unexpected key '${key}' for mount type '${m.type}'`);
        m.size = parseRAMInBytes(v);
        break;
      case 'env':
        if (m.type !== 'secret') fail(`unexpected key '${key}' for mount type '${m.type}'`);
        m.env = v;
        break;
      default:
        fail(`unexpected key '${key}' in '${field}' (valid keys: ${allKeys.join(', ')})`);
    }
  }

  const fileInfoAllowed = m.type === 'secret' || m.type === 'ssh' || m.type === 'cache';
  for (const k of ['mode', 'uid', 'gid'] as const) {
    if (m[k] !== undefined && !fileInfoAllowed) fail(`${k} not allowed for "${m.type}" type mounts`);
  }
  if (roAuto) m.readonly = !(m.type === 'cache' || m.type === 'tmpfs');
  if (m.sharing && m.type !== 'cache') fail(`invalid cache sharing set for ${m.type} mount`);
  if (m.type === 'secret') {
    if (m.from !== undefined) fail('secret mount should not have a from');
    if (!m.source && !m.target && !m.id) fail('invalid secret mount. one of source, target required');
    if (m.source && m.id) fail("both source and id can't be set");
  }
  if (m.type === 'ssh' && m.source) fail('ssh does not support source');
  if ((m.type === 'bind' || m.type === 'cache' || m.type === 'tmpfs') && !m.target) {
    fail(`mount type=${m.type} requires a target`);
  }
  return m;
}
