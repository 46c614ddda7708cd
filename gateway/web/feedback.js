// What the page tells the person: the connection's state, the server's refusals in words, and
// notices of what others did (a friend request, a join request).

import {byId, button, el, replaceChildren} from './dom.js';

/** Statuses that mean a request was refused or failed (docs/protocol.md, "Error codes"). */
const FAILURES = new Set([
  'BAD_REQUEST', 'UNKNOWN_ACTION', 'UNAUTHORIZED', 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT',
  'RATE_LIMITED', 'BUSY', 'TOO_MANY_CONNECTIONS', 'SERVICE_UNAVAILABLE', 'TIMEOUT', 'INTERNAL',
  'TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'NOT_LOGGED', 'USER_NOT_CONFIRMED',
  'USER_ALREADY_REGISTERED', 'CONFIRMATION_FAILED', 'USER_ALREADY_CONFIRMED', 'USER_LOGOUT_ERROR',
  'DISCONNECTED',
]);

export function isFailure(frame) {
  return FAILURES.has(frame?.rocketStatus);
}

const ERROR_LIFETIME_MS = 12000;

/** Shows a refusal: the server's sentence, and its code for whoever reports it. */
export function showError(frame, context) {
  const list = byId('errors');
  const sentence = typeof frame?.message === 'string' && frame.message
    ? frame.message : 'Something went wrong.';
  const item = el('p', {class: 'error'},
    el('span', {class: 'error-text'}, context ? `${context}: ${sentence}` : sentence),
    el('span', {class: 'code'}, ` (${frame?.rocketStatus ?? 'ERROR'})`));
  item.append(button('Dismiss', () => item.remove(), {class: 'link', 'aria-label': 'Dismiss this error'}));
  list.append(item);
  setTimeout(() => item.remove(), ERROR_LIFETIME_MS);
}

/**
 * Shows `reply`'s refusal if it is one and returns false; true for a success.
 * `context` names what was tried ("Sending the message").
 */
export function succeeded(reply, context) {
  if (isFailure(reply)) {
    showError(reply, context);
    return false;
  }
  return true;
}

const NOTICE_LIFETIME_MS = 8000;

const NOTICES_SHOWN = 3;

export function notice(text) {
  const list = byId('notices');
  const item = el('p', {}, text);
  list.append(item);
  while (list.childElementCount > NOTICES_SHOWN) list.firstElementChild.remove();
  setTimeout(() => item.remove(), NOTICE_LIFETIME_MS);
}

const STATE_WORDS = {
  connecting: 'Connecting…',
  open: 'Connected',
  waiting: 'Offline, reconnecting',
  stopped: 'Disconnected',
};

/** Draws the connection's state; `online` is true once the session is resumed on it. */
export function showConnectionState({state, retryInMs, code}, loggedIn) {
  const node = byId('conn-state');
  let words = STATE_WORDS[state] ?? state;
  if (state === 'open' && loggedIn) words = 'Online';
  if (state === 'waiting' && retryInMs !== undefined) {
    words = `Offline, reconnecting in ${Math.ceil(retryInMs / 1000)} s`;
  }
  if (state === 'stopped') {
    words = code === 1008
      ? 'Disconnected: too many requests were refused. Reload the page to connect again.'
      : 'Disconnected by the server. Reload the page to connect again.';
  }
  node.dataset.state = state === 'open' && loggedIn ? 'online' : state;
  replaceChildren(node, words);
}
