// The OCI leaf module: media types, document types, digests and platforms. Imports nothing of kiln.
export * from './media-types.js';
export * from './digest.js';
export * from './types.js';
export * from './platform.js';
