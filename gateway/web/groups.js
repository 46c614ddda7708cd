// Groups: create, search, ask to join, the groups one belongs to, and the panel of the open group:
// its members with their presence, and for admins the join requests and the bans, with the
// buttons to answer, add, remove, ban, unban, promote and demote.

import {button, byId, el, formValues, replaceChildren} from './dom.js';
import {notice, succeeded} from './feedback.js';
import {nameOf, rememberUser, state} from './store.js';
import {rememberMembers} from './temporary.js';

/**
 * `openGroup(group)` opens a group's conversation; `openDirect(userId)` the conversation with a
 * member (a temporary one unless they are friends).
 */
export function initGroups(conn, openGroup, openDirect) {
  const groups = {conn, openGroup, openDirect, info: null};

  const create = byId('group-create');
  create.addEventListener('submit', async (event) => {
    event.preventDefault();
    const {name, description} = formValues(create);
    const reply = await conn.request('CREATE_GROUP', {name, ...(description ? {description} : {})});
    if (!succeeded(reply, 'Creating the group')) return;
    create.reset();
    notice(reply.message);
    await refreshGroups(groups);
    openGroup(reply.group);
  });

  const search = byId('group-search');
  search.addEventListener('submit', async (event) => {
    event.preventDefault();
    const {query} = formValues(search);
    const reply = await conn.request('SEARCH_GROUPS', {query});
    if (!succeeded(reply, 'Searching groups')) return;
    const found = reply.groups ?? [];
    replaceChildren(byId('group-results'), found.length === 0
      ? el('li', {class: 'hint'}, 'No group found.')
      : found.map((group) => el('li', {class: 'item'},
        el('span', {class: 'name'}, group.name),
        el('span', {class: 'hint'}, `${group.memberCount} members`),
        roleAction(groups, group))));
  });

  const toggle = byId('group-info-toggle');
  toggle.addEventListener('click', () => {
    const panel = byId('group-panel');
    panel.hidden = !panel.hidden;
    toggle.setAttribute('aria-expanded', String(!panel.hidden));
    if (!panel.hidden) refreshGroupInfo(groups);
  });
  return groups;
}

function roleAction(groups, group) {
  switch (group.role) {
    case 'admin':
    case 'member':
      return button('Open', () => groups.openGroup(group), {'aria-label': `Open ${group.name}`});
    case 'requested':
      return el('span', {class: 'hint'}, 'request sent');
    case 'banned':
      return el('span', {class: 'hint'}, 'banned');
    default:
      return button('Ask to join', async (event) => {
        const pressed = event.currentTarget;
        const reply = await groups.conn.request('JOIN_GROUP', {groupId: group.groupId});
        if (!succeeded(reply, 'Asking to join')) return;
        notice(reply.message);
        pressed.replaceWith(el('span', {class: 'hint'}, 'request sent'));
      }, {'aria-label': `Ask to join ${group.name}`});
  }
}

export async function refreshGroups(groups) {
  const reply = await groups.conn.request('LIST_GROUPS');
  if (!succeeded(reply, 'Loading groups')) return;
  state.groups.clear();
  for (const group of reply.groups ?? []) state.groups.set(group.groupId, group);
  replaceChildren(byId('group-list'), state.groups.size === 0
    ? el('li', {class: 'hint'}, 'You are in no group yet.')
    : [...state.groups.values()].map((group) => el('li', {class: 'item'},
      el('span', {class: 'name'}, group.name),
      el('span', {class: 'hint'}, group.role === 'admin' ? 'admin' : `${group.memberCount} members`),
      button('Open', () => groups.openGroup(group), {'aria-label': `Open ${group.name}`}))));
}

/** Shows or hides the group button for the open conversation. */
export function activeChanged(groups) {
  const isGroup = state.active?.kind === 'group';
  const toggle = byId('group-info-toggle');
  toggle.hidden = !isGroup;
  const panel = byId('group-panel');
  if (!isGroup) {
    panel.hidden = true;
    toggle.setAttribute('aria-expanded', 'false');
  } else if (!panel.hidden) {
    refreshGroupInfo(groups);
  } else {
    // Members' names for the messages.
    refreshGroupInfo(groups, {quiet: true});
  }
}

/** GROUP_INFO of the open group, drawn into the panel. */
export async function refreshGroupInfo(groups, {quiet = false} = {}) {
  const groupId = state.active?.kind === 'group' ? state.active.groupId : null;
  if (!groupId) return;
  const reply = await groups.conn.request('GROUP_INFO', {groupId});
  if (!quiet && !succeeded(reply, 'Loading the group')) return;
  if (reply.rocketStatus !== 'GROUP_INFO' || state.active?.groupId !== groupId) return;
  const group = reply.group;
  for (const list of [group.members, group.joinRequests, group.banned]) (list ?? []).forEach(rememberUser);
  rememberMembers(group);
  groups.info = group;
  drawPanel(groups, group);
  groups.changed?.();
}

function drawPanel(groups, group) {
  const isAdmin = group.role === 'admin';
  const admins = new Set(group.admins ?? []);
  const act = (action, userId, words, extra = {}) => async () => {
    const reply = await groups.conn.request(action, {groupId: group.groupId, userId, ...extra});
    if (!succeeded(reply, words)) return;
    notice(reply.message);
    await refreshGroupInfo(groups);
    // The connection that acted gets the reply, not the event the others get.
    await groups.acted?.(reply);
  };
  const members = (group.members ?? []).map((member) => {
    const name = member.nickname ?? member.userId;
    const isMe = member.userId === state.me?.userId;
    const admin = admins.has(member.userId);
    return el('li', {class: 'item'},
      el('span', {class: `presence ${member.online ? 'on' : 'off'}`}, member.online ? 'online' : 'offline'),
      el('span', {class: 'name'}, isMe ? `${name} (you)` : name),
      admin ? el('span', {class: 'tag'}, 'admin') : null,
      isMe ? null : button('Message', () => groups.openDirect(member.userId),
        {class: 'secondary', 'aria-label': `Message ${name}`}),
      isAdmin && !isMe && !admin ? [
        button('Remove', act('REMOVE_MEMBER', member.userId, 'Removing the member'),
          {class: 'secondary', 'aria-label': `Remove ${name}`}),
        button('Ban', act('BAN_MEMBER', member.userId, 'Banning'),
          {class: 'secondary', 'aria-label': `Ban ${name}`}),
        button('Make admin', act('PROMOTE_ADMIN', member.userId, 'Promoting'),
          {'aria-label': `Make admin: ${name}`}),
      ] : null,
      isAdmin && admin ? button(isMe ? 'Step down' : 'Demote', act('DEMOTE_ADMIN', member.userId, 'Demoting'),
        {class: 'secondary', 'aria-label': isMe ? 'Step down as admin' : `Demote ${name}`}) : null);
  });
  const sections = [
    el('h3', {}, group.name),
    group.description ? el('p', {class: 'description'}, group.description) : null,
    el('h4', {}, `Members (${group.memberCount})`),
    el('ul', {class: 'list'}, members),
  ];
  if (isAdmin) {
    const requests = group.joinRequests ?? [];
    sections.push(el('h4', {}, 'Requests to join'), el('ul', {class: 'list'}, requests.length === 0
      ? el('li', {class: 'hint'}, 'None.')
      : requests.map((card) => el('li', {class: 'item'},
        el('span', {class: 'name'}, card.nickname ?? card.userId),
        button('Approve', act('RESPOND_JOIN', card.userId, 'Approving', {accept: true}),
          {'aria-label': `Approve ${card.nickname}`}),
        button('Decline', act('RESPOND_JOIN', card.userId, 'Declining', {accept: false}),
          {class: 'secondary', 'aria-label': `Decline ${card.nickname}`})))));
    const banned = group.banned ?? [];
    sections.push(el('h4', {}, 'Banned'), el('ul', {class: 'list'}, banned.length === 0
      ? el('li', {class: 'hint'}, 'Nobody.')
      : banned.map((card) => el('li', {class: 'item'},
        el('span', {class: 'name'}, card.nickname ?? card.userId),
        button('Unban', act('UNBAN_MEMBER', card.userId, 'Unbanning'),
          {'aria-label': `Unban ${card.nickname}`})))));
    const addable = [...state.friends.values()]
      .filter((friend) => !(group.members ?? []).some((m) => m.userId === friend.userId));
    if (addable.length === 0) {
      sections.push(el('p', {class: 'hint'}, 'Your friends who are not members can be added here.'));
    } else {
      const addForm = el('form', {class: 'inline-form'},
        el('label', {for: 'add-member-friend'}, 'Add a friend to the group'),
        el('div', {class: 'row'},
          el('select', {id: 'add-member-friend', name: 'userId'},
            addable.map((friend) => el('option', {value: friend.userId}, friend.nickname ?? friend.userId))),
          el('button', {type: 'submit'}, 'Add')));
      addForm.addEventListener('submit', (event) => {
        event.preventDefault();
        const userId = formValues(addForm).userId;
        if (userId) act('ADD_MEMBER', userId, 'Adding the member')();
      });
      sections.push(addForm);
    }
  }
  sections.push(button('Leave the group', async () => {
    const reply = await groups.conn.request('LEAVE_GROUP', {groupId: group.groupId});
    if (!succeeded(reply, 'Leaving the group')) return;
    notice(reply.message);
    groups.left?.(group.groupId);
  }, {class: 'danger'}));
  replaceChildren(byId('group-panel'), sections);
}

/** The sentence for a group event, naming the group and the person ("you" when it is the reader). */
export function groupEventWords(frame) {
  const me = frame.userId === state.me?.userId;
  const who = me ? 'You' : nameOf(frame.from?.userId ?? frame.userId);
  const group = frame.groupName ? `“${frame.groupName}”` : 'a group';
  switch (frame.rocketStatus) {
    case 'JOIN_REQUEST_RECEIVED': return `${frame.from?.nickname ?? who} asks to join ${group}.`;
    case 'JOIN_REJECTED': return `Your request to join ${group} was declined.`;
    case 'GROUP_JOINED': return `${me ? 'You' : (frame.member?.nickname ?? who)} joined ${group}.`;
    case 'GROUP_LEFT': return `${who} left ${group}.`;
    case 'MEMBER_REMOVED': return `${who} ${me ? 'were' : 'was'} removed from ${group}.`;
    case 'MEMBER_BANNED': return `${who} ${me ? 'were' : 'was'} banned from ${group}.`;
    case 'MEMBER_UNBANNED': return `You may join ${group} again.`;
    case 'ADMIN_PROMOTED': return `${who} became an admin of ${group}.`;
    case 'ADMIN_DEMOTED': return `${who} ${me ? 'are' : 'is'} no longer an admin of ${group}.`;
    default: return frame.message ?? '';
  }
}
