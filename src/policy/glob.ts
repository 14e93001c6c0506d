/**
 * Path globs for policy conditions, compiled once when the config is built.
 * `*` matches within one segment, `**` across segments. A trailing `/**`
 * also matches the bare prefix (`/admin/**` covers `/admin`), because an
 * operator who protects a folder means the folder itself too.
 */
export class PathGlob {
  private readonly re: RegExp;
  constructor(readonly pattern: string) {
    if (!pattern.startsWith('/')) throw new Error(`path glob ${JSON.stringify(pattern)} must start with /`);
    this.re = new RegExp(`^${translate(pattern)}$`);
  }
  matches(path: string): boolean {
    return this.re.test(path);
  }
}

function translate(glob: string): string {
  let out = '';
  let i = 0;
  while (i < glob.length) {
    if (glob.startsWith('/**', i) && (i + 3 === glob.length || glob[i + 3] === '/')) {
      // "/**" followed by "/" or the end: zero or more whole segments
      // "/**/x": the slash before x stays with x, so "/a/**/b" also matches "/a/b"
      out += '(?:/.*)?';
      i += 3;
      continue;
    }
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        out += '.*';
        i += 2;
      } else {
        out += '[^/]*';
        i += 1;
      }
      continue;
    }
    out += c.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
    i += 1;
  }
  return out;
}
