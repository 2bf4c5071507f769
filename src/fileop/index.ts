// COPY/ADD: the file operation the solver runs for a CopyStep.
export { copy } from './copy.js';
export { CopyError, emptySummary } from './types.js';
export type { CopyOp, CopySpec, CopySource, CopySummary, WrittenEntry } from './types.js';
export { detectArchive, detectCompression, extractTar, ArchiveError } from './archive.js';
export type { Compression, ExtractResult } from './archive.js';
export { download, urlFilename, parseChecksum, DownloadError } from './download.js';
export { resolveGit, resolveRef, gitChecksum, verifyGitChecksum, checkoutGit, GitError } from './git.js';
export type { ResolvedGit, GitRunOptions } from './git.js';
export type { GitSourceOptions } from './types.js';
export { resolveChown, parseChmod } from './owner.js';
export type { Owner } from './owner.js';
