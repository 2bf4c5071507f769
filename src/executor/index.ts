// The executor room: one RUN step in runc. Nothing else in kiln starts containers.
export { run } from './run.js';
export { sweepStaleContainers } from './sweep.js';
export { lookupUser, lookupGroup, UserLookupError, type ResolvedUser, type ResolvedGroup } from '../fsutil/rootfs-users.js';
export { ExecutorError, type ExecMount, type ExecLimits, type RunOptions, type RunResult } from './types.js';
export { DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS, DEFAULT_PATH } from './spec.js';
