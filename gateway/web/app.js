// The client's entry point: one connection to the server that served the page, the session
// resumed on every (re)connect with FASTLOGIN and continued with SYNC from the last position kept,
// and every pushed event handed to the view that shows it.

import {initAuth} from './auth.js';
import {
  drawConversations, drawHeader, drawMessages, initChat, loadNewest, onNewMessage, onReadReceipt,
  onTyping, openDirect, openGroup, refreshConversations, resendOutbox,
} from './chat.js';
import {Connection, serverUrl} from './connection.js';
import {byId, replaceChildren} from './dom.js';
import {isFailure, notice, showConnectionState, showError, succeeded} from './feedback.js';
import {activeChanged, groupEventWords, initGroups, refreshGroupInfo, refreshGroups} from './groups.js';
import {applyProfile, drawFriends, initPeople, refreshFriends, setPresence} from './people.js';
import {resetState, session, state} from './store.js';
import {forgetMembers, noteGroupEvent, reviewTemporary} from './temporary.js';

const conn = new Connection(serverUrl());
let loggedIn = false;
let lastConnectionState = {state: 'connecting'};

const chat = initChat(conn, {
  activeChanged: () => {
    activeChanged(groups);
    document.body.dataset.pane = state.active ? 'chat' : 'list';
  },
  sendRefused: () => review(),
});
const people = initPeople(conn, (userId) => {
  openDirect(chat, userId);
});
const groups = initGroups(conn, (group) => openGroup(chat, group), (userId) => openDirect(chat, userId));
groups.left = async () => {
  closeConversation();
  await Promise.all([refreshGroups(groups), refreshConversations(chat)]);
  await review();
};
// Members' names arrive with GROUP_INFO: the messages are drawn again with them.
groups.changed = () => drawMessages(chat);
// Removing someone may close a temporary conversation with them; approving may open it again.
groups.acted = async (reply) => {
  noteGroupEvent(reply);
  await review();
};

initAuth(conn, (reply, email) => startSession(reply, email));

function closeConversation() {
  state.active = null;
  replaceChildren(byId('chat-title'), 'Choose a conversation');
  drawHeader();
  drawMessages(chat);
  activeChanged(groups);
  document.body.dataset.pane = 'list';
}

initTabs();

byId('logout').addEventListener('click', async () => {
  const saved = session.load();
  if (saved) {
    const reply = await conn.request('LOGOUT', {userLoginData: saved});
    if (reply.rocketStatus !== 'USER_LOGOUT' && reply.rocketStatus !== 'USER_LOGOUT_ERROR') {
      succeeded(reply, 'Logging out');
      return;
    }
  }
  endSession();
});

byId('chat-back').addEventListener('click', () => {
  document.body.dataset.pane = 'list';
});

conn.addEventListener('state', (event) => {
  lastConnectionState = event.detail;
  if (event.detail.state !== 'open') loggedIn = false;
  showConnectionState(lastConnectionState, loggedIn);
});
conn.addEventListener('open', () => resume());
conn.addEventListener('event', (event) => handleEvent(event.detail));
showView();
conn.start();

// ------------------------------------------------------------------------------------------------
// The session

/** On every new socket: FASTLOGIN with the kept token, if there is one. */
async function resume() {
  const saved = session.load();
  if (!saved) {
    showView();
    return;
  }
  const reply = await conn.request('FASTLOGIN', {userLoginData: saved});
  if (reply.rocketStatus === 'USER_LOGGED') {
    await startSession(reply, saved.email);
  } else if (reply.rocketStatus === 'NOT_LOGGED') {
    showError(reply, 'Your session ended');
    endSession();
  } else if (reply.rocketStatus !== 'DISCONNECTED') {
    // The server is busy or unreachable behind the gateway: try again on a fresh socket soon.
    showError(reply, 'Resuming the session');
    setTimeout(() => {
      if (!loggedIn && conn.isOpen) resume();
    }, 2000 + Math.random() * 2000);
  }
}

async function startSession(reply, email) {
  const profile = reply.flag ?? {};
  const sameUser = state.me?.userId === profile.userId;
  if (!sameUser) resetState();
  state.me = profile;
  session.save(profile.email ?? email, profile.token);
  loggedIn = true;
  applyProfile(profile);
  showView();
  showConnectionState(lastConnectionState, loggedIn);
  // Group events may have been missed while away: members are read again if needed.
  forgetMembers();
  await sync();
  await Promise.all([refreshFriends(people), refreshGroups(groups), refreshConversations(chat)]);
  await review();
  if (state.active) {
    await loadNewest(chat);
    if (state.active.kind === 'group') refreshGroupInfo(groups, {quiet: true});
  }
  resendOutbox(chat);
}

/** SYNC from the kept position: replays what was missed, in order; or says what was lost. */
async function sync() {
  const userId = state.me.userId;
  const since = session.position(userId);
  const reply = await conn.request('SYNC', since ? {since} : {});
  if (reply.rocketStatus === 'SYNCED') {
    for (const event of reply.events ?? []) handleEvent(event, {replayed: true});
    session.savePosition(userId, reply.position);
  } else if (reply.rocketStatus === 'SYNC_GAP') {
    // Everything is reloaded after this anyway; only the loaded pages may be stale.
    state.messages.clear();
    state.hasMore.clear();
    session.savePosition(userId, reply.position);
  } else if (reply.rocketStatus === 'BAD_REQUEST' && since) {
    // A position from another deployment: start from now (the lists are reloaded next).
    session.forgetPosition(userId);
  } else {
    succeeded(reply, 'Catching up');
  }
}

function endSession() {
  session.clear();
  loggedIn = false;
  resetState();
  closeConversation();
  showView();
  showConnectionState(lastConnectionState, loggedIn);
}

function showView() {
  // With a kept session the app is shown at once, while FASTLOGIN resumes it.
  const inside = session.load() !== null;
  byId('auth-view').hidden = inside;
  byId('app-view').hidden = !inside;
  byId('logout').hidden = !inside;
  byId('whoami').hidden = !inside;
  if (!inside) replaceChildren(byId('whoami'));
}

// ------------------------------------------------------------------------------------------------
// Pushed events

function handleEvent(frame, {replayed = false} = {}) {
  if (state.me && typeof frame.position === 'string') {
    session.savePosition(state.me.userId, frame.position);
  }
  switch (frame.rocketStatus) {
    case 'NEW_MESSAGE':
      onNewMessage(chat, frame);
      break;
    case 'READ_RECEIPT':
      onReadReceipt(chat, frame);
      break;
    case 'TYPING':
      onTyping(frame);
      break;
    case 'PRESENCE':
      setPresence(people, frame.userId, Boolean(frame.online));
      break;
    case 'FRIEND_REQUEST_RECEIVED':
    case 'FRIEND_ADDED':
    case 'FRIEND_REQUEST_DECLINED':
    case 'FRIEND_REMOVED':
      if (!replayed) notice(friendEventWords(frame));
      // A friend's conversation is never closed; one no longer a friend's may be.
      refreshFriends(people).then(review);
      break;
    case 'PROFILE_UPDATED':
      applyProfile(frame.profile);
      break;
    case 'JOIN_REQUEST_RECEIVED':
    case 'JOIN_REJECTED':
    case 'GROUP_JOINED':
    case 'GROUP_LEFT':
    case 'MEMBER_REMOVED':
    case 'MEMBER_BANNED':
    case 'MEMBER_UNBANNED':
    case 'ADMIN_PROMOTED':
    case 'ADMIN_DEMOTED':
      onGroupEvent(frame, replayed);
      break;
    case 'SESSION_CLOSED':
      showError({rocketStatus: 'SESSION_CLOSED', message: frame.message});
      endSession();
      break;
    default:
      // A late reply after TIMEOUT, or a refusal that answers no request of ours.
      if (isFailure(frame)) showError(frame);
  }
}

function friendEventWords(frame) {
  const name = frame.user?.nickname ?? 'Someone';
  switch (frame.rocketStatus) {
    case 'FRIEND_REQUEST_RECEIVED': return `${name} wants to be your friend.`;
    case 'FRIEND_ADDED': return `${name} is now your friend.`;
    default: return frame.message ?? '';
  }
}

async function onGroupEvent(frame, replayed) {
  noteGroupEvent(frame);
  if (!replayed) notice(groupEventWords(frame));
  const out = frame.userId === state.me?.userId
    && ['MEMBER_REMOVED', 'MEMBER_BANNED', 'GROUP_LEFT'].includes(frame.rocketStatus);
  if (out && state.active?.groupId === frame.groupId) {
    await groups.left();
    return;
  }
  await Promise.all([refreshGroups(groups), refreshConversations(chat)]);
  if (state.active?.groupId === frame.groupId) refreshGroupInfo(groups, {quiet: true});
  await review();
}

/** Redraws what shows temporary conversations when one closed or opened again. */
async function review() {
  if (!loggedIn) return;
  if (await reviewTemporary(conn)) {
    drawConversations(chat);
    drawHeader();
  }
}

// ------------------------------------------------------------------------------------------------
// Tabs (arrow keys move between them, as in the WAI-ARIA tabs pattern)

function initTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute('aria-selected', String(selected));
      other.tabIndex = selected ? 0 : -1;
      byId(other.getAttribute('aria-controls')).hidden = !selected;
    }
    if (tab.id === 'tab-friends') drawFriends(people);
  };
  tabs.forEach((tab, index) => {
    tab.addEventListener('click', () => select(tab));
    tab.addEventListener('keydown', (event) => {
      const step = {ArrowRight: 1, ArrowLeft: -1}[event.key];
      if (!step) return;
      const next = tabs[(index + step + tabs.length) % tabs.length];
      next.focus();
      select(next);
    });
  });
}
