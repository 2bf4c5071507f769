// Packages loaded on first use rather than at start-up. A cached build packs and parses no tar and
// reads no xattr, and importing tar-stream (with streamx and its helpers) or the native xattr binding
// costs 15-30 ms each on a small machine, which is a tenth of a warm build. Synchronous (require),
// because the callers that need them (a tar pack handed back as a stream, an xattr read inside a
// synchronous walk) cannot wait for an import().
import { createRequire } from 'node:module';
import type * as Xattr from '@napi-rs/xattr';
import type TarStream from 'tar-stream';

const require = createRequire(import.meta.url);

let tar: typeof TarStream | undefined;
let xattr: typeof Xattr | undefined;

export function tarStream(): typeof TarStream {
  return (tar ??= require('tar-stream') as typeof TarStream);
}

export function xattrs(): typeof Xattr {
  return (xattr ??= require('@napi-rs/xattr') as typeof Xattr);
}
