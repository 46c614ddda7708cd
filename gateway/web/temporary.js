// Temporary conversations: a direct conversation between two people who are not friends may be
// written to only while they share a group (docs/protocol.md, SEND_MESSAGE). The server sends no
// event when that ends, so the client works it out from what it knows: its friends, and the
// members of its groups, read once per session with GROUP_INFO and then kept up to date by the
// groups' events.

import {state} from './store.js';

/** groupId -> Set of member ids, for the groups the user is in. */
const members = new Map();
/** Bumped by every review, so an older one that finishes late changes nothing. */
let reviews = 0;

/** After a reconnect events may have been missed: the members are read again when needed. */
export function forgetMembers() {
  members.clear();
}

/** Keeps the members of a GROUP_INFO reply (a non-member's reply has none). */
export function rememberMembers(group) {
  if (!group || typeof group.groupId !== 'string') return;
  if (Array.isArray(group.members)) {
    members.set(group.groupId, new Set(group.members.map((member) => member.userId)));
  } else {
    members.delete(group.groupId);
  }
}

/** A group event that changes who is in the group. */
export function noteGroupEvent(frame) {
  const held = members.get(frame.groupId);
  if (!held || typeof frame.userId !== 'string') return;
  if (frame.rocketStatus === 'GROUP_JOINED') held.add(frame.userId);
  if (['GROUP_LEFT', 'MEMBER_REMOVED', 'MEMBER_BANNED'].includes(frame.rocketStatus)) {
    held.delete(frame.userId);
  }
}

/** Whether the conversation is a temporary one its two people can no longer write to. */
export function isClosed(conversationId) {
  return state.closed.has(conversationId);
}

/**
 * Works out which temporary conversations are closed, from the friends and groups already loaded.
 * Returns true when that changed. When a group cannot be read now (the server busy, the
 * connection lost) nothing changes: the next group or friend event reviews again.
 */
export async function reviewTemporary(conn) {
  const review = ++reviews;
  const others = new Map();
  for (const conversation of state.conversations.values()) {
    const other = conversation.with?.userId;
    if (conversation.kind === 'direct' && conversation.temporary && other && !state.friends.has(other)) {
      others.set(conversation.conversationId, other);
    }
  }
  for (const groupId of members.keys()) {
    if (!state.groups.has(groupId)) members.delete(groupId);
  }
  if (others.size > 0) {
    const unread = [...state.groups.keys()].filter((groupId) => !members.has(groupId));
    const replies = await Promise.all(unread.map((groupId) => conn.request('GROUP_INFO', {groupId})));
    for (const reply of replies) {
      if (reply.rocketStatus === 'GROUP_INFO') rememberMembers(reply.group);
      // A group deleted meanwhile is shared with nobody.
      else if (reply.rocketStatus !== 'NOT_FOUND') return false;
    }
  }
  if (review !== reviews) return false;
  const shared = (userId) => [...members.values()].some((ids) => ids.has(userId));
  const closed = [...others].filter(([, other]) => !shared(other)).map(([conversationId]) => conversationId);
  const changed = closed.length !== state.closed.size || closed.some((id) => !state.closed.has(id));
  state.closed = new Set(closed);
  return changed;
}
