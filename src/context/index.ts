// The build context room: the walk with .dockerignore and the pattern rules it shares with COPY.
export { walkContext, readIgnorePatterns, compareNames, entryFromStat, ContextError } from './walk.js';
export type { ContextEntry, EntryType, WalkOptions } from './walk.js';
export { PatternMatcher, parseIgnoreFile, IgnorePatternError } from './patterns.js';
export type { Pattern, MatchInfo } from './patterns.js';
export { cleanPath, goMatch, compileGoMatch, hasWildcards, BadPatternError } from './gopath.js';
export { relOf, splitPivot, splitWildcards } from './source-paths.js';
export { directoryContext, listedContext, type ContextSource } from './source.js';
export { listDigest, syncEntries, writeWantedTar, type SyncEntry } from './sync.js';
export { fileStampOf, type FileStamp } from './stamp.js';
export {
  extractContextTar,
  cleanEntryPath,
  safeTreePathSync,
  writeNewFile,
  setDirMetaSync,
  type TarContextLimits,
} from './tar-extract.js';
export { readFileInside } from './read-inside.js';
