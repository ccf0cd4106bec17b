// @sandboxd/sdk: the TypeScript client of sandboxd.

export { Sandboxd, VERSION, type ClientOptions } from './client.js';
export * from './errors.js';
export { Runs, type LogOptions, type RunListOptions, type WaitOptions } from './runs.js';
export { Projects, type ProjectCreate, type ProjectListOptions, type ProjectUpdate } from './projects.js';
export { SandboxChanges } from './changes.js';
export { Sandbox, Sandboxes, Snapshots, type SandboxListOptions, type SandboxPage } from './sandboxes.js';
export {
  Process,
  Processes,
  Terminal,
  type ProcessListOptions,
  type ProcessWaitOptions,
  type RunOptions,
  type StreamOptions,
} from './processes.js';
export { Files, Watcher, type FileList, type TarSource } from './files.js';
export { createTar, readTar, type TarEntry, type TarFile } from './tar.js';
export type { RetryInfo } from './transport.js';
export { WebSocketConnection, type WebSocketMessage } from './ws.js';
export type * from './types.js';
