// The registry client's public face.
export { RegistryClient } from './client.js';
export type { ResolvedImage, ResolveOptions, PullOptions, FetchBlobOptions, PushOptions, PushResult, TransferEvent } from './client.js';
export type { RegistryConfig, BasicCredentials, Endpoint } from './config.js';
export { endpointsFor, isInsecureRegistry } from './config.js';
export { RegistryError } from './errors.js';
export { parseWWWAuthenticate, lookupCredentials } from './auth.js';
