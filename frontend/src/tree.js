// Conversations are trees: regenerating an answer or editing a message adds a sibling. The page
// shows one branch, chosen at each fork by the reader, else the fork's most recent line.

export const ROOT = "root";

export function keyOf(parentId) {
  return parentId == null ? ROOT : parentId;
}

/** Children of every message (and of ROOT), oldest first. */
export function childrenOf(messages) {
  const children = new Map();
  for (const message of [...messages.values()].sort((a, b) => a.id - b.id)) {
    const key = keyOf(message.parent);
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(message.id);
  }
  return children;
}

/** The newest id in each subtree, so that a fork defaults to where work happened last. */
function newestBelow(children) {
  const newest = new Map();
  const visit = (id) => {
    let best = id;
    for (const child of children.get(id) || []) best = Math.max(best, visit(child));
    newest.set(id, best);
    return best;
  };
  for (const id of children.get(ROOT) || []) visit(id);
  return newest;
}

/** The ids of the branch on show, from the first message down. */
export function activeBranch(messages, chosen) {
  const children = childrenOf(messages);
  const newest = newestBelow(children);
  const branch = [];
  let key = ROOT;
  for (;;) {
    const kids = children.get(key);
    if (!kids || !kids.length) return branch;
    let pick = chosen.get(key);
    if (!kids.includes(pick)) {
      pick = kids.reduce((a, b) => (newest.get(b) > newest.get(a) ? b : a));
    }
    branch.push(pick);
    key = pick;
  }
}

/** Where `id` stands among its siblings: {index, count, siblings}. */
export function siblingsOf(messages, id) {
  const message = messages.get(id);
  const siblings = [...messages.values()]
    .filter((other) => keyOf(other.parent) === keyOf(message.parent))
    .map((other) => other.id)
    .sort((a, b) => a - b);
  return { index: siblings.indexOf(id), count: siblings.length, siblings };
}

/** The last message of the branch on show (null for an empty conversation): a new message
 * answers it. */
export function branchTip(messages, chosen) {
  const branch = activeBranch(messages, chosen);
  return branch.length ? branch[branch.length - 1] : null;
}

/** The sibling `step` places from `id` (-1 the previous, 1 the next), or null past either end. */
export function siblingAt(messages, id, step) {
  const { index, siblings } = siblingsOf(messages, id);
  const next = siblings[index + step];
  return next == null ? null : next;
}
