// Friends: search people, send, accept, decline and withdraw requests, remove friends, see who is
// online; and the user's own nickname.

import {button, byId, el, formValues, replaceChildren} from './dom.js';
import {notice, succeeded} from './feedback.js';
import {rememberUser, state} from './store.js';

/** `openDirect(userId)` opens the conversation with a user. */
export function initPeople(conn, openDirect) {
  const people = {conn, openDirect};

  const search = byId('people-search');
  search.addEventListener('submit', async (event) => {
    event.preventDefault();
    const {query} = formValues(search);
    const payload = query.includes('@') ? {email: query} : {nickname: query};
    const reply = await conn.request('SEARCH_USERS', payload);
    if (!succeeded(reply, 'Searching people')) return;
    const list = byId('people-results');
    const users = reply.users ?? [];
    users.forEach(rememberUser);
    replaceChildren(list, users.length === 0 ? el('li', {class: 'hint'}, 'Nobody found.') : users.map((user) =>
      el('li', {class: 'item'},
        el('span', {class: 'name'}, user.nickname ?? user.userId),
        state.friends.has(user.userId)
          ? el('span', {class: 'hint'}, 'friend')
          : button('Add friend', () => request(people, user.userId), {'aria-label': `Add friend: ${user.nickname}`}))));
  });

  const profile = byId('profile-form');
  profile.addEventListener('submit', async (event) => {
    event.preventDefault();
    const {nickname} = formValues(profile);
    const reply = await conn.request('UPDATE_PROFILE', {nickname});
    if (!succeeded(reply, 'Saving the nickname')) return;
    applyProfile(reply.profile);
    notice(reply.message);
  });

  return people;
}

async function request(people, userId) {
  const reply = await people.conn.request('FRIEND_REQUEST', {userId});
  if (!succeeded(reply, 'Asking to be friends')) return;
  notice(reply.message);
  await refreshFriends(people);
}

async function respond(people, userId, accept) {
  const reply = await people.conn.request('FRIEND_RESPOND', {userId, accept});
  if (!succeeded(reply, accept ? 'Accepting' : 'Declining')) return;
  notice(reply.message);
  await refreshFriends(people);
}

async function remove(people, userId, what) {
  const reply = await people.conn.request('FRIEND_REMOVE', {userId});
  if (!succeeded(reply, what)) return;
  notice(reply.message);
  await refreshFriends(people);
}

/** Applies a profile from UPDATE_PROFILE or PROFILE_UPDATED to the header and the form. */
export function applyProfile(profile) {
  if (!profile || !state.me) return;
  state.me = {...state.me, ...profile};
  rememberUser({userId: state.me.userId, nickname: state.me.nickname});
  replaceChildren(byId('whoami'), state.me.nickname ?? state.me.email ?? '');
  byId('profile-nickname').value = state.me.nickname ?? '';
}

/** LIST_FRIENDS, then draws the lists. */
export async function refreshFriends(people) {
  const reply = await people.conn.request('LIST_FRIENDS');
  if (!succeeded(reply, 'Loading friends')) return;
  for (const [key, map] of [['friends', state.friends], ['incoming', state.incoming], ['outgoing', state.outgoing]]) {
    map.clear();
    for (const card of reply[key] ?? []) {
      rememberUser(card);
      map.set(card.userId, card);
    }
  }
  drawFriends(people);
}

export function setPresence(people, userId, online) {
  const friend = state.friends.get(userId);
  if (!friend) return;
  friend.online = online;
  drawFriends(people);
}

export function drawFriends(people) {
  const name = (card) => el('span', {class: 'name'}, card.nickname ?? card.userId);
  replaceChildren(byId('friend-list'), state.friends.size === 0
    ? el('li', {class: 'hint'}, 'No friends yet.')
    : [...state.friends.values()].map((friend) => el('li', {class: 'item', 'data-user': friend.userId},
      el('span', {class: `presence ${friend.online ? 'on' : 'off'}`}, friend.online ? 'online' : 'offline'),
      name(friend),
      button('Message', () => people.openDirect(friend.userId), {'aria-label': `Message ${friend.nickname}`}),
      button('Remove', () => remove(people, friend.userId, 'Removing the friend'),
        {class: 'secondary', 'aria-label': `Remove ${friend.nickname} from friends`}))));
  replaceChildren(byId('incoming-list'), state.incoming.size === 0
    ? el('li', {class: 'hint'}, 'None.')
    : [...state.incoming.values()].map((card) => el('li', {class: 'item'},
      name(card),
      button('Accept', () => respond(people, card.userId, true), {'aria-label': `Accept ${card.nickname}`}),
      button('Decline', () => respond(people, card.userId, false),
        {class: 'secondary', 'aria-label': `Decline ${card.nickname}`}))));
  replaceChildren(byId('outgoing-list'), state.outgoing.size === 0
    ? el('li', {class: 'hint'}, 'None.')
    : [...state.outgoing.values()].map((card) => el('li', {class: 'item'},
      name(card),
      button('Withdraw', () => remove(people, card.userId, 'Withdrawing the request'),
        {class: 'secondary', 'aria-label': `Withdraw the request to ${card.nickname}`}))));
  const badge = byId('incoming-count');
  badge.hidden = state.incoming.size === 0;
  replaceChildren(badge, String(state.incoming.size));
}
