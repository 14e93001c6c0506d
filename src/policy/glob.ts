/**
 * Path globs for policy conditions, compiled once when the config is built.
 * `*` matches within one segment, `**` across segments. A trailing `/**`
 * also matches the bare prefix (`/admin/**` covers `/admin`), because an
 * operator who protects a folder means the folder itself too.
 *
 * A glob is matched by reading the path once while keeping the set of glob
 * positions still alive (an automaton, not a regular expression), so the cost
 * is at most path length × glob length, whatever the path. The regular
 * expression this replaced backtracked once a glob had two `**`: one 15 KB
 * request path that almost matched held the event loop, and with it every
 * app, for seconds.
 */
export class PathGlob {
  // State s reads `char[s]` (-1: nothing) to move to s + 1, reads what
  // `repeat[s]` allows to stay on s, and reaches `skip[s]` (-1: none; always a
  // later state) without reading. The last state, `char.length`, accepts.
  private readonly char: Int32Array;
  private readonly repeat: Uint8Array;
  private readonly skip: Int32Array;
  /** what every matching path starts with: the glob up to its first wildcard */
  private readonly prefix: string;
  // The alive states as a list (few are alive at once), and for each state the
  // step at which it was last listed, so that it is listed once a step. Reused:
  // matching is synchronous.
  private readonly alive: Int32Array;
  private readonly next: Int32Array;
  private readonly listedAt: Int32Array;

  constructor(readonly pattern: string) {
    if (!pattern.startsWith('/')) throw new Error(`path glob ${JSON.stringify(pattern)} must start with /`);
    const states = compile(pattern);
    this.char = Int32Array.from(states, (s) => s.char);
    this.repeat = Uint8Array.from(states, (s) => s.repeat);
    this.skip = Int32Array.from(states, (s) => s.skip);
    const literal = states.findIndex((s) => s.char < 0 || s.skip >= 0);
    this.prefix = literal < 0 ? pattern : pattern.slice(0, literal);
    this.alive = new Int32Array(states.length + 1);
    this.next = new Int32Array(states.length + 1);
    this.listedAt = new Int32Array(states.length + 1);
  }

  matches(path: string): boolean {
    if (!path.startsWith(this.prefix)) return false;
    const { char, repeat, skip, listedAt } = this;
    const accept = char.length;
    let { alive, next } = this;
    listedAt.fill(-1);
    // Lists s and the states its skips reach; returns the new length of the list.
    const list = (into: Int32Array, n: number, s: number, step: number): number => {
      for (; s >= 0 && listedAt[s] !== step; s = s < accept ? skip[s]! : -1) {
        listedAt[s] = step;
        into[n++] = s;
      }
      return n;
    };
    let count = list(alive, 0, 0, 0);
    for (let i = 0; i < path.length; i++) {
      const c = path.charCodeAt(i);
      const step = i + 1;
      let n = 0;
      for (let k = 0; k < count; k++) {
        const s = alive[k]!;
        if (s === accept) continue;
        if (char[s] === c) n = list(next, n, s + 1, step);
        const r = repeat[s];
        if (r === ANY || (r === SEGMENT && c !== SLASH)) n = list(next, n, s, step);
      }
      if (n === 0) return false;
      [alive, next] = [next, alive];
      count = n;
    }
    return listedAt[accept] === path.length;
  }
}

const SLASH = 0x2f;
/** What a state reads and stays on: nothing, any character but '/' (`*`), any character (`**`). */
const NONE = 0;
const SEGMENT = 1;
const ANY = 2;

function compile(glob: string): { char: number; repeat: number; skip: number }[] {
  const states: { char: number; repeat: number; skip: number }[] = [];
  let i = 0;
  while (i < glob.length) {
    if (glob.startsWith('/**', i) && (i + 3 === glob.length || glob[i + 3] === '/')) {
      // "/**" followed by "/" or the end: nothing, or "/" and then anything.
      // "/**/x": the slash before x stays with x, so "/a/**/b" also matches "/a/b"
      const at = states.length;
      states.push({ char: SLASH, repeat: NONE, skip: at + 2 });
      states.push({ char: -1, repeat: ANY, skip: at + 2 });
      i += 3;
      continue;
    }
    if (glob[i] === '*') {
      const across = glob[i + 1] === '*';
      states.push({ char: -1, repeat: across ? ANY : SEGMENT, skip: states.length + 1 });
      i += across ? 2 : 1;
      continue;
    }
    states.push({ char: glob.charCodeAt(i), repeat: NONE, skip: -1 });
    i += 1;
  }
  return states;
}
