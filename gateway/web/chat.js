// Conversations: the list with unread counts and last messages, a conversation's history (older
// pages load as you scroll up), sending with retries by clientMsgId, pictures and files, typing
// signals and read receipts.

import {byId, el, humanSize, replaceChildren, timeElement} from './dom.js';
import {showError, succeeded} from './feedback.js';
import {directConversationId, nameOf, rememberUser, session, state} from './store.js';
import {isClosed} from './temporary.js';

const PAGE = 50;
const TYPING_EVERY_MS = 3000;
const TYPING_SHOWN_MS = 5000;

/**
 * `hooks.activeChanged()` is called when another conversation is opened, for the group panel
 * and the narrow layout; `hooks.sendRefused()` when the server refused a message, which may mean
 * a temporary conversation closed.
 */
export function initChat(conn, hooks) {
  const chat = {conn, hooks, loading: false, lastTypingSent: 0};

  byId('composer').addEventListener('submit', (event) => {
    event.preventDefault();
    send(chat);
  });
  byId('composer-text').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send(chat);
    }
  });
  byId('composer-text').addEventListener('input', () => typing(chat));
  byId('load-older').addEventListener('click', () => loadOlder(chat));
  byId('message-scroll').addEventListener('scroll', () => {
    if (byId('message-scroll').scrollTop < 40) loadOlder(chat);
  });
  document.addEventListener('visibilitychange', () => markRead(chat));
  window.addEventListener('focus', () => markRead(chat));
  return chat;
}

// ------------------------------------------------------------------------------------------------
// The list

export async function refreshConversations(chat) {
  const reply = await chat.conn.request('LIST_CONVERSATIONS');
  if (!succeeded(reply, 'Loading conversations')) return;
  state.conversations.clear();
  for (const conversation of reply.conversations ?? []) {
    rememberUser(conversation.with);
    state.conversations.set(conversation.conversationId, conversation);
  }
  drawConversations(chat);
}

function titleOf(conversation) {
  if (conversation.kind === 'group') return conversation.groupName ?? 'Group';
  const other = conversation.with?.userId ?? conversation.userId;
  return other ? nameOf(other) : 'Conversation';
}

export function drawConversations(chat) {
  const sorted = [...state.conversations.values()]
    .sort((a, b) => (b.lastMessage?.sentAt ?? 0) - (a.lastMessage?.sentAt ?? 0));
  byId('no-conversations').hidden = sorted.length > 0;
  let total = 0;
  replaceChildren(byId('conversation-list'), sorted.map((conversation) => {
    const unread = conversation.unread ?? 0;
    total += unread;
    const last = conversation.lastMessage;
    const preview = last
      ? `${nameOf(last.senderId)}: ${last.text || 'an attachment'}`
      : 'No messages yet';
    const active = state.active?.conversationId === conversation.conversationId;
    const open = el('button', {
      type: 'button', class: 'conversation', 'aria-current': active ? 'true' : false,
      'data-conversation': conversation.conversationId,
    },
    el('span', {class: 'title'}, titleOf(conversation),
      conversation.temporary ? el('span', {class: 'tag'}, 'temporary') : null,
      isClosed(conversation.conversationId) ? el('span', {class: 'tag closed'}, 'closed') : null),
    unread > 0
      ? el('span', {class: 'badge'}, String(unread), el('span', {class: 'visually-hidden'}, ' unread'))
      : null,
    el('span', {class: 'preview'}, preview));
    open.addEventListener('click', () => openConversation(chat, conversation));
    return el('li', {}, open);
  }));
  const badge = byId('unread-total');
  badge.hidden = total === 0;
  replaceChildren(badge, String(total));
}

// ------------------------------------------------------------------------------------------------
// One conversation

/**
 * Opens a direct conversation with a user, whether or not it has messages yet: with a friend a
 * permanent one, with anyone else (a member of a shared group) a temporary one.
 */
export function openDirect(chat, userId) {
  const conversationId = directConversationId(state.me.userId, userId);
  const known = state.conversations.get(conversationId);
  openConversation(chat, known ?? {
    conversationId, kind: 'direct', with: state.users.get(userId) ?? {userId},
    temporary: !state.friends.has(userId),
  });
}

/** Opens a group's conversation. */
export function openGroup(chat, group) {
  const conversationId = `g:${group.groupId}`;
  openConversation(chat, state.conversations.get(conversationId) ?? {
    conversationId, kind: 'group', groupId: group.groupId, groupName: group.name, temporary: false,
  });
}

export async function openConversation(chat, conversation) {
  state.active = {
    conversationId: conversation.conversationId,
    kind: conversation.kind,
    groupId: conversation.groupId ?? null,
    userId: conversation.with?.userId ?? null,
    temporary: Boolean(conversation.temporary),
  };
  replaceChildren(byId('chat-title'), titleOf(conversation));
  drawHeader();
  drawConversations(chat);
  drawMessages(chat);
  chat.hooks.activeChanged();
  if (!state.messages.has(conversation.conversationId)) await loadNewest(chat);
  markRead(chat);
  byId('composer-text').focus();
}

/**
 * What the open conversation is: the "temporary" tag, and for a closed temporary conversation
 * why nothing can be written in it (the composer goes; the messages stay to read).
 */
export function drawHeader() {
  const active = state.active;
  const temporary = Boolean(active
    && (state.conversations.get(active.conversationId)?.temporary ?? active.temporary));
  const closed = Boolean(active) && isClosed(active.conversationId);
  const tag = byId('chat-temporary');
  tag.hidden = !temporary;
  replaceChildren(tag, closed ? 'temporary, closed' : 'temporary');
  const note = byId('chat-closed');
  note.hidden = !closed;
  replaceChildren(note, closed
    ? `This conversation is closed: you and ${nameOf(active.userId)} no longer share a group. `
      + 'Become friends or join a group together to write again.'
    : '');
  byId('composer').hidden = !active || closed;
}

/** Fetches the newest page of the active conversation and merges it (after a reconnect too). */
export async function loadNewest(chat) {
  const active = state.active;
  if (!active) return;
  const reply = await chat.conn.request('HISTORY', {conversationId: active.conversationId, limit: PAGE});
  if (reply.rocketStatus === 'NOT_FOUND' && active.kind === 'direct') {
    // A direct conversation exists from its first message on.
    state.messages.set(active.conversationId, state.messages.get(active.conversationId) ?? new Map());
    state.hasMore.set(active.conversationId, false);
  } else if (succeeded(reply, 'Loading messages')) {
    const held = state.messages.get(active.conversationId);
    const newest = reply.messages ?? [];
    const gap = held && held.size > 0 && newest.length > 0 && newest[0].seq > Math.max(...held.keys()) + 1;
    // Older pages held across a gap would leave a hole: start again from this page.
    const messages = held && !gap ? held : new Map();
    for (const message of newest) messages.set(message.seq, message);
    state.messages.set(active.conversationId, messages);
    if (!held || gap) state.hasMore.set(active.conversationId, Boolean(reply.hasMore));
  }
  if (state.active?.conversationId === active.conversationId) {
    drawMessages(chat);
    scrollToEnd();
  }
}

async function loadOlder(chat) {
  const active = state.active;
  if (!active || chat.loading || !state.hasMore.get(active.conversationId)) return;
  const held = state.messages.get(active.conversationId);
  if (!held || held.size === 0) return;
  chat.loading = true;
  replaceChildren(byId('history-state'), 'Loading older messages…');
  const scroller = byId('message-scroll');
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  const reply = await chat.conn.request('HISTORY', {
    conversationId: active.conversationId, beforeSeq: Math.min(...held.keys()), limit: PAGE,
  });
  chat.loading = false;
  replaceChildren(byId('history-state'));
  if (!succeeded(reply, 'Loading older messages')) return;
  for (const message of reply.messages ?? []) held.set(message.seq, message);
  state.hasMore.set(active.conversationId, Boolean(reply.hasMore));
  if (state.active?.conversationId !== active.conversationId) return;
  drawMessages(chat);
  scroller.scrollTop = scroller.scrollHeight - fromBottom;
}

function scrollToEnd() {
  const scroller = byId('message-scroll');
  scroller.scrollTop = scroller.scrollHeight;
}

function nearEnd() {
  const scroller = byId('message-scroll');
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

export function drawMessages(chat) {
  const active = state.active;
  const list = byId('message-list');
  if (!active) {
    replaceChildren(list);
    return;
  }
  const held = state.messages.get(active.conversationId) ?? new Map();
  const hasMore = state.hasMore.get(active.conversationId);
  byId('load-older').hidden = !hasMore;
  replaceChildren(byId('history-state'),
    held.size > 0 && hasMore === false ? 'This is the start of the conversation.' : '');
  const sorted = [...held.values()].sort((a, b) => a.seq - b.seq);
  const pending = [...state.outbox.entries()]
    .filter(([, item]) => item.conversationId === active.conversationId)
    .map(([clientMsgId, item]) => ({clientMsgId, text: item.text, attachments: [], pending: true}));
  replaceChildren(list,
    sorted.map((message) => messageItem(chat, message)),
    pending.map((message) => messageItem(chat, message)));
  drawTyping();
}

function messageItem(chat, message) {
  const mine = message.pending || message.senderId === state.me?.userId;
  const item = el('li', {
    class: `message ${mine ? 'mine' : 'theirs'}`,
    'data-seq': message.seq ?? false,
    'data-client-msg-id': message.clientMsgId ?? false,
  },
  el('div', {class: 'meta'},
    el('span', {class: 'author'}, mine ? 'You' : nameOf(message.senderId)),
    message.sentAt ? timeElement(message.sentAt) : null),
  message.text ? el('p', {class: 'text'}, message.text) : null);
  const attachments = message.attachments ?? [];
  if (attachments.length > 0) {
    item.append(el('div', {class: 'attachments'}, attachments.map(attachmentElement)));
  }
  if (mine) item.append(el('p', {class: 'receipt'}, receiptWords(message)));
  return item;
}

function attachmentElement(file) {
  const name = file.name ?? 'file';
  if (file.kind === 'picture' && file.thumbnailUrl) {
    return el('a', {href: file.url, target: '_blank', rel: 'noopener noreferrer', class: 'picture'},
      el('img', {src: file.thumbnailUrl, alt: `Picture: ${name}`, loading: 'lazy'}));
  }
  return el('a', {href: file.url, download: name, class: 'file'},
    `${name} (${humanSize(file.size ?? 0)})`);
}

function receiptWords(message) {
  if (message.pending) return 'Sending…';
  const marks = state.readMarks.get(message.conversationId);
  const readers = marks
    ? [...marks.entries()].filter(([userId, seq]) => userId !== state.me?.userId && seq >= message.seq).length
    : 0;
  if (state.active?.kind === 'group') return readers > 0 ? `Read by ${readers}` : 'Sent';
  return readers > 0 ? 'Read' : 'Sent';
}

// ------------------------------------------------------------------------------------------------
// Reading and typing

function markRead(chat) {
  const active = state.active;
  if (!active || document.visibilityState !== 'visible') return;
  const held = state.messages.get(active.conversationId);
  if (!held || held.size === 0) return;
  const seq = Math.max(...held.keys());
  const conversation = state.conversations.get(active.conversationId);
  if ((conversation?.readSeq ?? 0) >= seq && (conversation?.unread ?? 0) === 0) return;
  if (conversation) {
    conversation.readSeq = seq;
    conversation.unread = 0;
    drawConversations(chat);
  }
  chat.conn.request('MARK_READ', {conversationId: active.conversationId, seq})
    .then((reply) => succeeded(reply, 'Marking as read'));
}

function typing(chat) {
  const active = state.active;
  const now = Date.now();
  if (!active || now - chat.lastTypingSent < TYPING_EVERY_MS) return;
  // A direct conversation exists from its first message on; before it there is nobody to tell.
  if (!state.messages.get(active.conversationId)?.size) return;
  if (byId('composer-text').value.trim() === '') return;
  chat.lastTypingSent = now;
  // A lost typing signal is not worth a word to the person.
  chat.conn.request('TYPING', {conversationId: active.conversationId});
}

function stopTyping(conversationId, userId) {
  const people = state.typing.get(conversationId);
  if (!people?.has(userId)) return;
  clearTimeout(people.get(userId));
  people.delete(userId);
  drawTyping();
}

function drawTyping() {
  const people = state.active ? state.typing.get(state.active.conversationId) : null;
  const names = people ? [...people.keys()].map(nameOf) : [];
  replaceChildren(byId('typing'), names.length === 0 ? ''
    : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`);
}

// ------------------------------------------------------------------------------------------------
// Events

export function onNewMessage(chat, frame) {
  const conversationId = frame.conversationId;
  const message = {
    messageId: frame.messageId, conversationId, seq: frame.seq, senderId: frame.senderId,
    clientMsgId: frame.clientMsgId, text: frame.text, attachments: frame.attachments ?? [],
    sentAt: frame.sentAt,
  };
  stopTyping(conversationId, frame.senderId);
  const held = state.messages.get(conversationId);
  const wasNearEnd = nearEnd();
  if (held) held.set(message.seq, message);
  let conversation = state.conversations.get(conversationId);
  if (!conversation) {
    const described = frame.conversation ?? {};
    const otherId = described.kind === 'direct' ? otherOf(conversationId) : null;
    conversation = {
      conversationId, kind: described.kind ?? 'direct', groupId: described.groupId ?? null,
      groupName: state.groups.get(described.groupId)?.name ?? null,
      with: otherId ? (state.users.get(otherId) ?? {userId: otherId}) : null,
      temporary: Boolean(described.temporary), unread: 0, lastSeq: 0,
    };
    state.conversations.set(conversationId, conversation);
    // Names and the rest of the summary come with the list; once for a burst (a SYNC replay).
    clearTimeout(chat.refreshTimer);
    chat.refreshTimer = setTimeout(() => refreshConversations(chat), 300);
  }
  if ((conversation.lastSeq ?? 0) < message.seq) {
    conversation.lastSeq = message.seq;
    conversation.lastMessage = message;
    const mine = message.senderId === state.me?.userId;
    if (!mine && message.seq > (conversation.readSeq ?? 0)) conversation.unread = (conversation.unread ?? 0) + 1;
  }
  drawConversations(chat);
  if (state.active?.conversationId === conversationId) {
    drawMessages(chat);
    if (wasNearEnd) scrollToEnd();
    markRead(chat);
  }
}

function otherOf(conversationId) {
  const ids = conversationId.slice(2).split('|');
  return ids.find((id) => id !== state.me?.userId) ?? null;
}

export function onReadReceipt(chat, frame) {
  const marks = state.readMarks.get(frame.conversationId) ?? new Map();
  marks.set(frame.userId, Math.max(marks.get(frame.userId) ?? 0, frame.seq));
  state.readMarks.set(frame.conversationId, marks);
  if (frame.userId === state.me?.userId) {
    const conversation = state.conversations.get(frame.conversationId);
    if (conversation && frame.seq >= (conversation.lastSeq ?? 0)) {
      conversation.unread = 0;
      conversation.readSeq = frame.seq;
      drawConversations(chat);
    }
  }
  if (state.active?.conversationId === frame.conversationId) drawMessages(chat);
}

export function onTyping(frame) {
  const people = state.typing.get(frame.conversationId) ?? new Map();
  clearTimeout(people.get(frame.userId));
  people.set(frame.userId, setTimeout(() => stopTyping(frame.conversationId, frame.userId), TYPING_SHOWN_MS));
  state.typing.set(frame.conversationId, people);
  drawTyping();
}

// ------------------------------------------------------------------------------------------------
// Sending

async function send(chat) {
  const active = state.active;
  if (!active || isClosed(active.conversationId)) return;
  const textarea = byId('composer-text');
  const fileInput = byId('composer-file');
  const text = textarea.value.trim();
  const file = fileInput.files?.[0] ?? null;
  if (!text && !file) return;
  const attachments = [];
  if (file) {
    const uploaded = await upload(file);
    if (!uploaded) return;
    attachments.push(uploaded.fileId);
    fileInput.value = '';
  }
  textarea.value = '';
  const to = active.kind === 'group' ? {groupId: active.groupId} : {userId: active.userId};
  const clientMsgId = crypto.randomUUID();
  state.outbox.set(clientMsgId, {to, text, attachments, conversationId: active.conversationId});
  drawMessages(chat);
  scrollToEnd();
  await deliver(chat, clientMsgId);
}

/**
 * Sends one message of the outbox; it stays there (shown as "Sending…") until the server has
 * it, and is sent again with the same clientMsgId after a reconnect, so it is stored once.
 */
async function deliver(chat, clientMsgId) {
  const item = state.outbox.get(clientMsgId);
  if (!item) return;
  const reply = await chat.conn.request('SEND_MESSAGE', {
    to: item.to, text: item.text, clientMsgId,
    ...(item.attachments.length > 0 ? {attachments: item.attachments} : {}),
  });
  if (['DISCONNECTED', 'UNAUTHORIZED'].includes(reply.rocketStatus)) return; // resent on login
  if (['TIMEOUT', 'SERVICE_UNAVAILABLE', 'CONFLICT', 'BUSY'].includes(reply.rocketStatus)) {
    const wait = (reply.retryAfterMs ?? 1000) * (1 + Math.random());
    setTimeout(() => deliver(chat, clientMsgId), wait);
    return;
  }
  state.outbox.delete(clientMsgId);
  if (!succeeded(reply, 'Sending the message')) {
    drawMessages(chat);
    if (reply.rocketStatus === 'FORBIDDEN') chat.hooks.sendRefused?.();
    return;
  }
  const message = {
    messageId: reply.messageId, conversationId: reply.conversationId, seq: reply.seq,
    senderId: state.me.userId, clientMsgId, text: item.text, attachments: reply.attachments ?? [],
    sentAt: reply.sentAt,
  };
  const held = state.messages.get(reply.conversationId) ?? new Map();
  held.set(message.seq, message);
  state.messages.set(reply.conversationId, held);
  let conversation = state.conversations.get(reply.conversationId);
  if (!conversation) {
    await refreshConversations(chat);
    conversation = state.conversations.get(reply.conversationId);
  }
  if (conversation && (conversation.lastSeq ?? 0) <= message.seq) {
    conversation.lastSeq = message.seq;
    conversation.lastMessage = message;
    conversation.readSeq = message.seq;
    conversation.temporary = Boolean(reply.temporary);
  }
  if (state.active?.conversationId === reply.conversationId) {
    state.active.temporary = Boolean(reply.temporary);
    drawHeader();
  }
  drawConversations(chat);
  drawMessages(chat);
  scrollToEnd();
}

/** After a (re)login: everything still in the outbox, again with its clientMsgId. */
export function resendOutbox(chat) {
  for (const clientMsgId of state.outbox.keys()) deliver(chat, clientMsgId);
}

/** POST /files with progress; the file's description, or null after showing why not. */
function upload(file) {
  const progress = byId('upload-progress');
  const token = session.load()?.token ?? '';
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/files?name=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    xhr.upload.addEventListener('progress', (event) => {
      if (!event.lengthComputable) return;
      const percent = Math.round((event.loaded / event.total) * 100);
      progress.value = percent;
      replaceChildren(progress, `${percent}%`);
    });
    const done = (result) => {
      progress.hidden = true;
      resolve(result);
    };
    xhr.addEventListener('load', () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status === 201 && body?.fileId) {
        done(body);
        return;
      }
      showError(body?.rocketStatus ? body : {
        rocketStatus: `HTTP ${xhr.status}`, message: 'The file could not be uploaded.',
      }, `Uploading ${file.name}`);
      done(null);
    });
    xhr.addEventListener('error', () => {
      showError({rocketStatus: 'DISCONNECTED', message: 'The upload was cut off.'}, `Uploading ${file.name}`);
      done(null);
    });
    progress.value = 0;
    progress.hidden = false;
    xhr.send(file);
  });
}
