// CPU-heavy work off the event loop: the one piscina pool and its typed tasks.
export { closePool, compressFile, hashFile, hashFiles, poolCounters, poolSize, resetPoolCounters, scanFiles, whoami } from './pool.js';
export type { Compression, PoolCounters, ScanItem, ScanResult, ScannedType } from './pool.js';
