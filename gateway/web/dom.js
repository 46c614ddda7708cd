// Building the page's elements. Everything another person wrote (message text, nicknames, group
// names) enters the page through `textContent` here, never as markup.

/**
 * Creates an element: `el('button', {type: 'button', class: 'link'}, 'Accept')`.
 * Attributes are set with setAttribute (never `on*` handlers: the policy forbids them);
 * children are nodes or strings, and strings become text nodes.
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on')) throw new Error(`inline handler ${name} refused`);
    node.setAttribute(name, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

/** Appends strings as text and nodes as they are; skips null, undefined and false. */
export function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces an element's children. */
export function replaceChildren(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** A button that runs `action` when pressed (by mouse or keyboard). */
export function button(label, action, attributes = {}) {
  const node = el('button', {type: 'button', ...attributes}, label);
  node.addEventListener('click', action);
  return node;
}

export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}

/** The form's fields by name, as trimmed strings (passwords untrimmed). */
export function formValues(form) {
  const values = {};
  for (const [name, value] of new FormData(form).entries()) {
    if (typeof value !== 'string') continue;
    values[name] = name === 'password' ? value : value.trim();
  }
  return values;
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit', minute: '2-digit', day: 'numeric', month: 'short',
});

/** A message's time for people, and the machine-readable value for <time>. */
export function timeElement(millis) {
  const when = new Date(millis);
  return el('time', {datetime: when.toISOString()}, timeFormat.format(when));
}

export function humanSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
