// What the client knows: the session kept in localStorage (so a reload resumes it with FASTLOGIN,
// and SYNC continues from the last position), and the in-memory state the views draw.

const SESSION_KEY = 'switchyard.session';
const positionKey = (userId) => `switchyard.position.${userId}`;

export const session = {
  /** {email, token} of the open session, or null. */
  load() {
    try {
      const saved = JSON.parse(localStorage.getItem(SESSION_KEY) ?? 'null');
      return saved && typeof saved.email === 'string' && typeof saved.token === 'string' ? saved : null;
    } catch {
      return null;
    }
  },
  save(email, token) {
    localStorage.setItem(SESSION_KEY, JSON.stringify({email, token}));
  },
  clear() {
    localStorage.removeItem(SESSION_KEY);
  },
  /** The newest event position received for this user, or null. */
  position(userId) {
    return localStorage.getItem(positionKey(userId));
  },
  forgetPosition(userId) {
    localStorage.removeItem(positionKey(userId));
  },
  savePosition(userId, position) {
    if (typeof position === 'string' && position) localStorage.setItem(positionKey(userId), position);
  },
};

/** The state the views draw; changed only by app.js and the view modules' handlers. */
export const state = {
  /** The logged-in user's profile (`flag` of USER_LOGGED), or null. */
  me: null,
  /** userId -> card ({userId, nickname, profileUrl}), from every list and event seen. */
  users: new Map(),
  friends: new Map(),
  incoming: new Map(),
  outgoing: new Map(),
  /** groupId -> summary (LIST_GROUPS, GROUP_INFO). */
  groups: new Map(),
  /** conversationId -> summary (LIST_CONVERSATIONS), kept up to date by events. */
  conversations: new Map(),
  /** conversationId -> Map(seq -> message). */
  messages: new Map(),
  /** conversationId -> whether older messages exist than those held. */
  hasMore: new Map(),
  /** conversationId -> Map(userId -> seq read). */
  readMarks: new Map(),
  /** conversationId -> Map(userId -> timer) of people typing there. */
  typing: new Map(),
  /** conversationIds of temporary conversations whose two people no longer share a group. */
  closed: new Set(),
  /** The conversation on screen: {conversationId, kind, userId?, groupId?}, or null. */
  active: null,
  /** clientMsgId -> {to, text, attachments, conversationId}: sent, not yet acknowledged. */
  outbox: new Map(),
};

export function rememberUser(card) {
  if (card && typeof card.userId === 'string') {
    const known = state.users.get(card.userId) ?? {};
    state.users.set(card.userId, {...known, ...card});
  }
}

/** A person's name for the page: "you", their nickname, or a short form of their id. */
export function nameOf(userId) {
  if (state.me && userId === state.me.userId) return 'You';
  const card = state.users.get(userId);
  return card?.nickname ?? `user ${String(userId).slice(0, 8)}`;
}

/** The id both users of a direct conversation compute: `d:` and the two ids sorted. */
export function directConversationId(a, b) {
  return `d:${[a, b].sort().join('|')}`;
}

export function resetState() {
  state.me = null;
  for (const value of Object.values(state)) {
    if (value instanceof Map || value instanceof Set) value.clear();
  }
  state.active = null;
}
