/**
 * What a document's aliases would expand to, decided before the document is turned into
 * values. yaml's own guard (maxAliasCount) counts uses of an anchor, so 51 apps sharing
 * `preAuth: &p passthrough` were refused as an alias bomb; and an alias inside the node its
 * anchor names builds a cyclic value that every later walk follows for ever.
 */
import { isAlias, isCollection, isPair, isScalar, visit, type Alias, type Document, type Node } from 'yaml';

/**
 * How many nodes (mappings, lists, keys and values) aliases may add to a config in all. A config
 * that repeats a few shared blocks adds hundreds; "billion laughs" nests aliases to add billions.
 */
export const MAX_ALIAS_NODES = 100_000;

export type AliasProblem = { alias: Alias; why: string };

/** The first alias that makes the document unreadable, in document order, or undefined. */
export function aliasProblem(doc: Document): AliasProblem | undefined {
  const targets = new Map<Alias, Node>();
  const latest = new Map<string, Node>();
  let cycle: AliasProblem | undefined;
  // A node is visited before its children, so an alias inside its own anchor's node finds that node.
  visit(doc, {
    Node(_key, node) {
      if (isAlias(node)) {
        const target = latest.get(node.source);
        // No anchor before it: yaml reports that one itself, with its wording.
        if (!target) return undefined;
        if (inside(node, target)) {
          cycle = { alias: node, why: `alias *${node.source} is inside the value its anchor &${node.source} names, which would make that value contain itself` };
          return visit.BREAK;
        }
        targets.set(node, target);
      } else if (node.anchor) {
        latest.set(node.anchor, node);
      }
      return undefined;
    },
  });
  if (cycle) return cycle;

  const sizes = new Map<Node, number>();
  const size = (node: unknown): number => {
    if (isAlias(node)) return size(targets.get(node));
    if (!isCollection(node)) return node === null || node === undefined ? 0 : 1;
    let n = sizes.get(node);
    if (n === undefined) {
      n = 1;
      for (const item of node.items) n += isPair(item) ? size(item.key) + size(item.value) : size(item);
      sizes.set(node, n);
    }
    return n;
  };
  let added = 0;
  let over: AliasProblem | undefined;
  visit(doc, {
    Alias(_key, node) {
      const target = targets.get(node);
      if (!target) return undefined;
      added += isScalar(target) ? 0 : size(target);
      if (added <= MAX_ALIAS_NODES) return undefined;
      over = { alias: node, why: `with alias *${node.source} the aliases expand to more than ${MAX_ALIAS_NODES} nodes (refused: a resource exhaustion guard)` };
      return visit.BREAK;
    },
  });
  return over;
}

function inside(alias: Alias, target: Node): boolean {
  const [start] = alias.range ?? [0];
  const r = target.range;
  return !!r && start >= r[0] && start < r[2];
}
