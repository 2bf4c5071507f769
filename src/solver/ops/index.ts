// The ops of the Dockerfile's filesystem steps, as a solver drives them by default.

import { copyOp } from './copy.js';
import { runOp } from './run.js';
import type { OpTable } from './types.js';
import { workdirOp } from './workdir.js';

export const DEFAULT_OPS: OpTable = { run: runOp, copy: copyOp, workdir: workdirOp };
