/** Maps key paths back to file:line:col in the YAML document they came from. */
import { isMap, isSeq, isPair, isScalar, type Document, type LineCounter, type Node } from 'yaml';

export type KeyPath = readonly (string | number)[];

export function formatPath(path: KeyPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return visible(out);
}

/** format and control characters, line and paragraph separators, and every space but the ASCII one */
const INVISIBLE = /(?! )[\p{Cf}\p{Cc}\p{Zl}\p{Zp}\p{Zs}]/gu;

/**
 * Text a problem quotes from the file, with what a terminal or a CI annotation would not show
 * written as an escape: a zero-width space made `"pre\u200bAuth"` read as `"preAuth"` (did you
 * mean "preAuth"?), and a right-to-left override reordered the rest of the line.
 */
export function visible(text: string): string {
  return text.replace(INVISIBLE, (c) => {
    const code = c.codePointAt(0)!;
    return code > 0xffff ? `\\u{${code.toString(16)}}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

export class SourceMap {
  constructor(
    readonly file: string,
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  /**
   * Position of the value at `path`, or of its key when `key` is set. When the
   * path does not exist (a missing key), the nearest existing ancestor is used.
   */
  position(path: KeyPath, key = false): { line: number; col: number } {
    let node: unknown = this.doc.contents;
    let best: { start: number } | undefined = rangeOf(node);
    for (let i = 0; i < path.length; i++) {
      const seg = path[i]!;
      if (isMap(node)) {
        // Keys become strings in the loaded object (an unquoted 2024: is a number in YAML), so compare as strings.
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
        if (!pair) break;
        const last = i === path.length - 1;
        if (last && key) {
          best = rangeOf(pair.key) ?? best;
          node = undefined;
          break;
        }
        node = pair.value;
        best = rangeOf(node) ?? rangeOf(pair.key) ?? best;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg];
        if (item === undefined) break;
        node = item;
        best = rangeOf(node) ?? best;
      } else {
        break;
      }
    }
    const pos = this.lines.linePos(best?.start ?? 0);
    return { line: pos.line, col: pos.col };
  }

  /** Line and column of a character offset (the yaml parser reports offsets). */
  positionOf(offset: number): { line: number; col: number } {
    const pos = this.lines.linePos(offset);
    return { line: pos.line, col: pos.col };
  }

  /**
   * Key path of the mapping key that starts at `offset`, e.g. for a duplicate
   * key (the parser only reports where it is). Undefined when no key starts there.
   */
  keyPathAt(offset: number): KeyPath | undefined {
    const walk = (node: unknown, path: (string | number)[]): KeyPath | undefined => {
      if (isMap(node)) {
        for (const pair of node.items) {
          const seg = isScalar(pair.key) ? pair.key.value : pair.key;
          const segment = typeof seg === 'number' ? String(seg) : typeof seg === 'string' ? seg : '?';
          if (rangeOf(pair.key)?.start === offset) return [...path, segment];
          const found = walk(pair.value, [...path, segment]);
          if (found) return found;
        }
      } else if (isSeq(node)) {
        for (const [i, item] of node.items.entries()) {
          const found = walk(item, [...path, i]);
          if (found) return found;
        }
      }
      return undefined;
    };
    return walk(this.doc.contents, []);
  }
}

function rangeOf(node: unknown): { start: number } | undefined {
  const r = (node as Node | undefined)?.range;
  return r ? { start: r[0] } : undefined;
}
