// Small DOM helpers the page's modules share.

export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

// Name/value pairs into a <dl>, skipping the values the answer did not carry.
export function addFacts(dl, pairs) {
  for (const [name, value] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    dl.append(el("dt", { textContent: name }), el("dd", { textContent: String(value) }));
  }
}
