// Builder flags of one instruction (`COPY --from=x --link`), validated like BuildKit's BFlags:
// unknown flags, repeated flags, missing values and bad booleans are errors.

import { fail } from './errors.js';

type FlagType = 'bool' | 'string' | 'strings';

export class Flags {
  private readonly defs = new Map<string, FlagType>();
  private readonly values = new Map<string, string[]>();

  constructor(
    private readonly instruction: string,
    private readonly args: string[],
  ) {}

  bool(name: string): this {
    this.defs.set(name, 'bool');
    return this;
  }
  string(name: string): this {
    this.defs.set(name, 'string');
    return this;
  }
  strings(name: string): this {
    this.defs.set(name, 'strings');
    return this;
  }

  parse(): this {
    for (const raw of this.args) {
      if (!raw.startsWith('--')) fail(`${this.instruction}: flag should start with --: ${raw}`);
      if (raw === '--') break;
      let name = raw.slice(2);
      let value: string | undefined;
      const eq = name.indexOf('=');
      if (eq >= 0) {
        value = name.slice(eq + 1);
        name = name.slice(0, eq);
      }
      const type = this.defs.get(name);
      if (!type) {
        const known = [...this.defs.keys()].map((k) => '--' + k).join(', ');
        fail(`unknown flag --${name} for ${this.instruction}` + (known ? ` (valid flags: ${known})` : ''));
      }
      if (this.values.has(name) && type !== 'strings') fail(`${this.instruction}: duplicate flag specified: --${name}`);
      const list = this.values.get(name) ?? [];
      if (type === 'bool') {
        if (value === '') fail(`${this.instruction}: missing a value on flag: --${name}`);
        const lower = (value ?? 'true').toLowerCase();
        if (lower !== 'true' && lower !== 'false') fail(`${this.instruction}: expecting boolean value for flag --${name}, not: ${value}`);
        list.push(lower);
      } else {
        if (value === undefined) fail(`${this.instruction}: missing a value on flag: --${name}`);
        list.push(value);
      }
      this.values.set(name, list);
    }
    return this;
  }

  used(name: string): boolean {
    return this.values.has(name);
  }
  getBool(name: string): boolean {
    return this.values.get(name)?.[0] === 'true';
  }
  getString(name: string): string | undefined {
    return this.values.get(name)?.[0];
  }
  getStrings(name: string): string[] {
    return this.values.get(name) ?? [];
  }
}
