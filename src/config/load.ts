/**
 * raw YAML -> validated, frozen Config. Every problem is collected with its
 * file:line:col and key path; nothing downstream ever sees raw input.
 */
import { accessSync, constants as fsConstants, statSync, type Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { cosmiconfig } from 'cosmiconfig';
import { LineCounter, isScalar, parseDocument, visit, type Document, type YAMLError } from 'yaml';
import { ConfigInvalidError, ConfigUnreadableError, type Problem } from '../errors.js';
import { loadPlugins, type LoadedPlugin } from '../plugins/registry.js';
import { pluginDeadlineMs } from '../plugins/deadline.js';
import { aliasProblem } from './aliases.js';
import { crossCheck } from './crosscheck.js';
import { ConfigSchema, type RawConfig } from './schema.js';
import { SourceMap, formatPath, visible, type KeyPath } from './source.js';
import { FileTooLargeError, NotARegularFileError, readRegularFile, type FileSnapshot } from './regularFile.js';
import { substitute, withoutResolvedValues, type SubstitutionResult } from './substitute.js';
import { coerceScalars, validateAgainst } from './validate.js';

export type DeepReadonly<T> = T extends (infer U)[] ? readonly DeepReadonly<U>[] : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T;

/** A validated config: typed, frozen, with ${...} references resolved. */
export type Config = DeepReadonly<RawConfig>;

export interface LoadOptions {
  /** lint: the environment (secrets, mounted files, plugins) may be absent, so those are warnings */
  mode: 'lint' | 'start';
  env?: NodeJS.ProcessEnv;
}

export interface LoadResult {
  file: string;
  dir: string;
  text: string;
  /** present only when there is no error */
  config?: Config;
  problems: Problem[];
  plugins: LoadedPlugin[];
  /** files the config refers to (certificates, ${file:...}, plugin modules): a change to them is a reload */
  referencedFiles: string[];
  /** the ${file:} files as this load read them: a generation is hashed from these (see contentHash) */
  readFiles: ReadonlyMap<string, FileSnapshot>;
  /** where a key path is in the file, for problems found after loading (a plugin's create() refusing its options) */
  locate(path: KeyPath): SourcePosition;
  /**
   * The message with each value a ${...} resolved to replaced by the reference: for what is
   * found after loading (a plugin's create() refusing its options) and printed or logged.
   */
  redact(message: string): string;
}

export interface SourcePosition {
  file: string;
  line: number;
  col: number;
}

export async function loadConfigFile(file: string, opts: LoadOptions): Promise<LoadResult> {
  return loadConfigText(await readConfigText(file), file, opts);
}

/** A config of thousands of apps is a few hundred KiB; the limit keeps a wrong path from filling the memory. */
export const MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024;

/**
 * The file's text. It must be UTF-8: decoding other bytes leniently turns them into U+FFFD, so a
 * Latin-1 `finé` would lint clean and then match no group or user, ever.
 */
export async function readConfigText(file: string): Promise<string> {
  let bytes: Buffer;
  try {
    // As a ${file:} value is read: a FIFO at the path blocked the read (and a reload, and the
    // gateway's exit) until a writer came, and /dev/zero filled the memory.
    bytes = readRegularFile(resolve(file), MAX_CONFIG_FILE_BYTES);
  } catch (e) {
    const why = e instanceof NotARegularFileError || e instanceof FileTooLargeError ? `it ${e.message}` : ((e as NodeJS.ErrnoException).code ?? (e as Error).message);
    throw new ConfigUnreadableError(`cannot read ${file}: ${why}`, file);
  }
  try {
    // The leading BOM is dropped, as the lenient decoding did (the YAML parser accepts it either way).
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    const lineStart = bytes.lastIndexOf(0x0a, at - 1) + 1;
    const line = bytes.subarray(0, at).filter((b) => b === 0x0a).length + 1;
    const col = bytes.subarray(lineStart, at).toString('utf8').length + 1;
    throw new ConfigUnreadableError(`${file}:${line}:${col}: not valid YAML: the file is not UTF-8 (byte 0x${bytes[at]!.toString(16).padStart(2, '0')} here); save it as UTF-8`, file, line, col);
  }
}

/** Offset of the first byte of the first invalid UTF-8 sequence (the input is known to hold one). */
function firstInvalidUtf8(bytes: Buffer): number {
  // Lenient decoding turns each invalid sequence into U+FFFD and leaves the rest as it was: encoded
  // again, the text first differs from the bytes inside (or right after) the first invalid sequence.
  const again = Buffer.from(bytes.toString('utf8'), 'utf8');
  let noticed = 0;
  while (noticed < bytes.length - 1 && bytes[noticed] === again[noticed]) noticed++;
  // Noticed on a byte that does not continue the sequence before it (Latin-1 "é\n", or "\xef\xbfA"
  // that began like U+FFFD): the error is that sequence's lead byte, which is at most 3 bytes back.
  for (let i = noticed - 1; i >= Math.max(0, noticed - 3); i--) {
    const b = bytes[i]!;
    if ((b & 0xc0) === 0x80) continue;
    const length = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return i + length > noticed ? i : noticed;
  }
  return noticed;
}

export async function loadConfigText(text: string, file: string, opts: LoadOptions): Promise<LoadResult> {
  const abs = resolve(file);
  const dir = dirname(abs);
  const lines = new LineCounter();
  // logLevel error: the parser's warnings are reported below as problems, never on the process's stderr.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: sameKey, merge: false, logLevel: 'error' });
  const problems: Problem[] = [];
  const map = new SourceMap(file, doc, lines);
  let resolved: SubstitutionResult['resolved'] = [];
  const locate = (path: KeyPath): SourcePosition => ({ file, ...map.position(path) });
  const redact = (message: string) => withoutResolvedValues(message, resolved);
  const add = (severity: Problem['severity'], path: KeyPath, message: string, atKey = false) => {
    const pos = map.position(path, atKey);
    // Every message about the file is built here: what it quotes from the file is shown with its invisible characters escaped.
    problems.push({ severity, message: shortQuotes(visible(redact(message))), path: formatPath(path), file, line: pos.line, col: pos.col });
  };

  // prettyErrors is off (its messages quote the source), so linePos is not filled in: map the offsets ourselves.
  for (const e of doc.errors) {
    const pos = map.positionOf(e.pos[0]);
    if (e.code === 'DUPLICATE_KEY') {
      const path = map.keyPathAt(e.pos[0]);
      const name = path?.length ? JSON.stringify(path[path.length - 1]) : 'key';
      problems.push({ severity: 'error', message: `duplicate key ${visible(name)} (the later value would silently replace the earlier one)`, path: path ? formatPath(path) : '', file, line: pos.line, col: pos.col });
      continue;
    }
    throw new ConfigUnreadableError(`${file}:${pos.line}:${pos.col}: not valid YAML: ${yamlReason(e)}`, file, pos.line, pos.col);
  }
  for (const w of doc.warnings) {
    const pos = map.positionOf(w.pos[0]);
    problems.push({ severity: 'warning', message: w.message.split('\n')[0]!, path: '', file, line: pos.line, col: pos.col });
  }

  // An empty file (or only comments) would otherwise read as two "missing required key" errors.
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    problems.push({ severity: 'error', message: 'the file is empty: it needs at least gateway: and apps:', path: '', file, line: 1, col: 1 });
    return { file, dir, text, config: undefined, problems, plugins: [], referencedFiles: [], readFiles: new Map(), locate, redact };
  }

  refuseCollectionKeys(doc, map, file);
  const rawJs = toPlain(doc, map, file);
  const env = opts.env ?? process.env;
  const sub = substitute(rawJs, dir, env);
  resolved = sub.resolved;
  for (const s of sub.issues) add(s.missing && opts.mode === 'lint' ? 'warning' : 'error', s.path, s.message);

  const value = sub.value as any;
  coerceScalars(ConfigSchema, value, sub.wholeReferences);
  for (const s of validateAgainst(ConfigSchema, value)) {
    if (sub.unresolved.has(JSON.stringify(s.path))) continue;
    add('error', s.path, s.message, s.atKey);
  }

  const specifiers: string[] = Array.isArray(value?.plugins) ? value.plugins.filter((p: unknown) => typeof p === 'string') : [];
  const { loaded, failures } = await loadPlugins(specifiers, dir, { timeoutMs: pluginDeadlineMs(env) });
  const unloaded = new Set<string>();
  for (const f of failures) {
    const lenient = opts.mode === 'lint' && f.notFound;
    add(lenient ? 'warning' : 'error', ['plugins', f.index], lenient ? `${f.message}; its options were not checked` : f.message);
    unloaded.add(f.guessedName);
  }

  for (const c of crossCheck({ raw: value, configDir: dir, plugins: loaded, unloadedPluginNames: unloaded, unresolved: sub.unresolved, written: sub.written })) {
    // A value whose ${...} could not be resolved already has its own problem; checking the
    // empty stand-in ("" is not a valid URL) would turn a lint warning into an error.
    if (sub.unresolved.has(JSON.stringify(c.path))) continue;
    add(c.environmental && opts.mode === 'lint' ? 'warning' : c.severity, c.path, c.message, c.atKey);
  }

  problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0));
  const referencedFiles = [...new Set([...sub.files, ...collectFiles(value, dir), ...loaded.flatMap((l) => (l.file ? [l.file] : []))])];
  const ok = !problems.some((p) => p.severity === 'error');
  return { file, dir, text, config: ok ? deepFreeze(value) : undefined, problems, plugins: loaded, referencedFiles, readFiles: sub.read, locate, redact };
}

/** The parser's error in one line; its own wording for a second document is advice to programmers (use parseAllDocuments). */
export function yamlReason(e: YAMLError): string {
  return e.code === 'MULTIPLE_DOCS' ? 'the file holds more than one YAML document (a --- line); it must be one document' : e.message.split('\n')[0]!;
}

/** Loads for serving: throws ConfigInvalidError unless the file is clean. */
export async function loadForStart(file: string, env?: NodeJS.ProcessEnv): Promise<LoadResult & { config: Config }> {
  const result = await loadConfigFile(file, { mode: 'start', env });
  if (!result.config) throw new ConfigInvalidError(result.problems, file);
  return result as LoadResult & { config: Config };
}

/**
 * The document as plain values. Aliases are resolved here, and this is where an alias
 * to an undefined anchor, an alias inside its own anchor's value, or an alias bomb (a
 * few lines that expand to millions of nodes) is found: each makes the file unreadable.
 */
export function toPlain(doc: Document, map: SourceMap, file: string): unknown {
  const refused = aliasProblem(doc);
  if (refused) {
    const pos = map.positionOf(refused.alias.range?.[0] ?? 0);
    throw new ConfigUnreadableError(`${file}:${pos.line}:${pos.col}: not valid YAML: ${refused.why}`, file, pos.line, pos.col);
  }
  try {
    // The expansion is bounded above (aliasProblem); yaml's count of uses would refuse a shared scalar used 51 times.
    return doc.toJS({ maxAliasCount: -1 }) ?? {};
  } catch (e) {
    const message = (e as Error).message;
    const unresolved = /^Unresolved alias.*: (.+)$/.exec(message)?.[1];
    let offset = 0;
    visit(doc, {
      Alias(_key, node) {
        if (unresolved === undefined || node.source === unresolved) {
          offset = node.range?.[0] ?? 0;
          return visit.BREAK;
        }
        return undefined;
      },
    });
    const pos = map.positionOf(offset);
    const why = unresolved !== undefined ? `alias *${unresolved} has no anchor &${unresolved} before it` : message.split('\n')[0];
    throw new ConfigUnreadableError(`${file}:${pos.line}:${pos.col}: not valid YAML: ${why}`, file, pos.line, pos.col);
  }
}

/**
 * Keys are compared as the loaded object has them, as strings: `2024:` (a number) and `"2024":`
 * are the same key there, and yaml's own comparison of values let the later silently win.
 */
function sameKey(a: unknown, b: unknown): boolean {
  return a === b || (isScalar(a) && isScalar(b) && String(a.value ?? '') === String(b.value ?? ''));
}

/** Every key in a config is a name; a `? [a, b]` key would be flattened into the text "[ a, b ]". */
function refuseCollectionKeys(doc: Document, map: SourceMap, file: string): void {
  visit(doc, {
    Pair(_key, pair) {
      if (pair.key === null || isScalar(pair.key)) return undefined;
      const pos = map.positionOf((pair.key as { range?: [number] }).range?.[0] ?? 0);
      throw new ConfigUnreadableError(`${file}:${pos.line}:${pos.col}: not valid YAML for a config: a key must be a single value, not a list or mapping (a "?" complex key)`, file, pos.line, pos.col);
    },
  });
}

function collectFiles(raw: any, dir: string): string[] {
  const out: string[] = [];
  const push = (p: unknown) => typeof p === 'string' && p && out.push(resolve(dir, p));
  push(raw?.gateway?.tls?.cert);
  push(raw?.gateway?.tls?.key);
  if (Array.isArray(raw?.apps)) for (const a of raw.apps) [a?.backend?.tls?.ca, a?.tls?.cert, a?.tls?.key].forEach(push);
  return out;
}

export function deepFreeze<T>(v: T): DeepReadonly<T> {
  // Bytes (a !!binary value a plugin's options may accept) cannot be frozen.
  if (v && typeof v === 'object' && !Object.isFrozen(v) && !ArrayBuffer.isView(v)) {
    Object.freeze(v);
    for (const k of Object.keys(v)) deepFreeze((v as any)[k]);
  }
  return v as DeepReadonly<T>;
}

export const SEARCH_PLACES = ['gateway.config.yaml', 'gateway.config.yml', '.config/gateway.config.yaml', '.drawbridgerc.yaml', '.drawbridgerc.yml', '.config/drawbridgerc.yaml'];

/** Finds gateway.config.yaml the way cosmiconfig does (cwd up to the project root). */
export async function discoverConfig(from = process.cwd()): Promise<string | undefined> {
  const unreadable = unreadableSearchPlace(from);
  if (unreadable) return unreadable;
  const pathOnly = () => ({});
  const explorer = cosmiconfig('drawbridge', {
    searchPlaces: SEARCH_PLACES,
    searchStrategy: 'project',
    // An empty file in the working directory is the config (and reported as empty), not a reason
    // to serve a parent directory's file in its place.
    ignoreEmptySearchPlaces: false,
    // We only want the path; the file is parsed by `yaml` so problems keep positions.
    loaders: { '.yaml': pathOnly, '.yml': pathOnly, noExt: pathOnly },
  });
  const found = await explorer.search(from);
  return found?.filepath;
}

/**
 * The place cosmiconfig would find first, when that is no regular file it can read (a FIFO,
 * a device) or one over the size limit: cosmiconfig reads what it finds whole, and a FIFO there
 * blocked lint and the gateway's start for good. Returned as found, readConfigText refuses it.
 * The walk is cosmiconfig's "project" search: from the working directory up to the first
 * directory with a package.json or package.yaml, the places in order in each.
 */
function unreadableSearchPlace(from: string): string | undefined {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    for (const place of SEARCH_PLACES) {
      const file = join(dir, place);
      const st = statOrUndefined(file);
      if (!st || st.isDirectory()) continue;
      // (one it cannot read, cosmiconfig passes over, on to a parent's place that may be a FIFO)
      return st.isFile() && st.size <= MAX_CONFIG_FILE_BYTES && readable(file) ? undefined : file;
    }
    if (statOrUndefined(join(dir, 'package.json')) || statOrUndefined(join(dir, 'package.yaml')) || dirname(dir) === dir) return undefined;
  }
}

function readable(file: string): boolean {
  try {
    accessSync(file, fsConstants.R_OK);
    return true;
  } catch {
    return false;
  }
}

function statOrUndefined(file: string): Stats | undefined {
  try {
    return statSync(file);
  } catch {
    return undefined;
  }
}

/** a quoted value in a message past this many characters is shown by its start and its length */
const QUOTE_SHOWN = 60;
const LONG_QUOTE = new RegExp(`"((?:[^"\\\\]|\\\\.){${QUOTE_SHOWN}})(?:[^"\\\\]|\\\\.)+"`, 'g');

/**
 * A problem is one line an operator reads: a 200 KB value pasted under the wrong key was quoted
 * whole, in the terminal and in every CI annotation. Its start and its length say which it is.
 */
function shortQuotes(message: string): string {
  return message.replace(LONG_QUOTE, (whole, start: string) => `"${start}…" (${whole.length - 2} characters)`);
}
