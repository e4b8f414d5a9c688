// ssegate demo page: plain JavaScript, no build step, no dependencies.
'use strict';

const $ = (sel) => document.querySelector(sel);
// EventSource delivers named events only to listeners of that name.
const EVENT_TYPES = ['account.created', 'snapshot', 'gap', 'message', 'order.shipped'];
const state = { es: null, accountId: null, opens: 0, events: [], lastId: null, tokens: 0 };
window.ssegate = state;   // for the end-to-end test

function setState(name) {
  const el = $('#state');
  el.textContent = name;
  el.className = 'state ' + name;
}

function say(text, bad) {
  const el = $('#message');
  el.textContent = text;
  el.style.color = bad ? 'var(--bad)' : '';
}

// Secure mode: every write needs a publish key. A real page never holds
// one; here the page plays the part of your application's back end too.
function publishKey() {
  return $('#publish-key').value.trim();
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (publishKey()) init.headers['Authorization'] = 'Bearer ' + publishKey();
  const res = await fetch(path, init);
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(json.message || ('HTTP ' + res.status));
  return json;
}

function time(d) {
  return d.toTimeString().slice(0, 8) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function addRow(ev) {
  let env = {};
  try { env = JSON.parse(ev.data); } catch (e) { env = { data: ev.data }; }
  const row = { id: ev.lastEventId || '', type: ev.type, serverId: env.serverId || '', data: env.data };
  state.events.push(row);
  const tr = document.createElement('tr');
  tr.className = 'new';
  tr.dataset.id = row.id;
  tr.dataset.type = row.type;
  for (const [text, cls] of [[time(new Date()), ''], [row.id || '(none)', ''], [row.type, ''],
                             [row.serverId || '-', ''], [JSON.stringify(row.data), 'data']]) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  $('#events tbody').prepend(tr);
  $('#count').textContent = '(' + state.events.length + ')';
  if (row.id) {
    state.lastId = row.id;
    $('#last-id').textContent = row.id;
  }
}

// Secure mode: a stream needs a token for its user. Your application's
// back end would issue it; this page asks the gateway with the publish
// key (POST /tokens). No key: open mode, no token.
async function streamToken(id) {
  if (!publishKey()) return null;
  const ttlSecs = Number($('#token-ttl').value) || 3600;
  const t = await api('POST', '/tokens', { userId: id, ttlSecs });
  state.tokens += 1;
  $('#tokens').textContent = String(state.tokens);
  return t.token;
}

// resume: the id to replay after ('0': the account's whole history), or
// null for live events only. Later reconnects of the same EventSource
// carry Last-Event-ID, which the server prefers.
async function connect(id, resume) {
  if (state.es) state.es.close();
  state.es = null;
  if (id !== state.accountId) {
    state.accountId = id;
    state.opens = 0;
  }
  $('#account-id').textContent = id;
  $('#snapshot').disabled = false;
  let token;
  try {
    token = await streamToken(id);
  } catch (err) {
    setState('closed');
    say('Could not get a stream token: ' + err.message, true);
    return;
  }
  let url = '/events/sse?userId=' + encodeURIComponent(id);
  if (resume) url += '&lastEventId=' + encodeURIComponent(resume);
  $('#stream-url').textContent = 'GET ' + url + (token ? '&token=…' : '');
  if (token) url += '&token=' + encodeURIComponent(token);
  setState('connecting');
  // EventSource reconnects by itself (after the server's "retry:") and
  // sends Last-Event-ID, so the server replays whatever was missed.
  const es = new EventSource(url);
  state.es = es;
  es.onopen = () => {
    state.opens += 1;
    $('#reconnects').textContent = String(Math.max(0, state.opens - 1));
    setState('open');
  };
  es.onerror = () => {
    if (es !== state.es) return;
    // 401/403 (a refused token) or 404 close an EventSource for good.
    setState(es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  };
  for (const t of EVENT_TYPES) es.addEventListener(t, addRow);
  // The token expired and the server ended the stream. EventSource would
  // reconnect with the same token, be refused and stop for good: close
  // it, get a fresh token, and reopen after the last event seen. Nothing
  // is lost.
  es.addEventListener('token-expired', () => {
    es.close();
    setState('renewing');
    connect(id, state.lastId);
  });
}

$('#create-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const body = { name: $('#name').value };
  if ($('#balance').value !== '') body.balance = Number($('#balance').value);
  try {
    // The stream opens after the account exists, so it replays the
    // account's history: account.created and the first snapshot show too.
    const acct = await api('POST', '/accounts', body);
    say('Created account ' + acct.id + ' for ' + acct.name + '.');
    state.lastId = null;
    connect(acct.id, '0');
  } catch (err) {
    say('Could not create the account: ' + err.message, true);
  }
});

$('#use-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const id = $('#use-id').value.trim();
  if (id) {
    state.lastId = null;
    connect(id, null);
  }
});

$('#snapshot-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!state.accountId) return;
  const v = $('#snapshot-balance').value;
  try {
    const snap = await api('POST', '/accounts/' + state.accountId + '/snapshots',
                           v === '' ? undefined : { balance: Number(v) });
    say('Snapshot ' + snap.id + ' recorded (balance ' + snap.balance + ').');
  } catch (err) {
    say('Could not post the snapshot: ' + err.message, true);
  }
});

// ---- Room view: chat on a topic --------------------------------------
// One stream per page: the user's own (for presence, which counts streams
// that name a userId) plus the room's topic. A chat message is a topic
// event of type chat.message with data {"userId","name","text"}. The page
// never removes a duplicate: if the gateway sent one, the test would see it.
const room = { es: null, name: null, userId: null, topic: null, opens: 0, lines: [],
               sent: [], members: [], presence: 'unknown', lastId: null, membersSeq: 0,
               poll: null, refreshing: false, refreshAgain: false };
window.ssegateRoom = room;   // for the end-to-end test
const ROOM_TYPES = ['chat.message', 'presence.join', 'presence.leave'];
const names = new Map();     // user id -> Promise of the account's name

function roomSay(text, bad) {
  const el = $('#room-message');
  el.textContent = text;
  el.style.color = bad ? 'var(--bad)' : '';
}

function roomSetState(name) {
  const el = $('#room-state');
  el.textContent = name;
  el.className = 'state ' + name;
}

// Presence events and the member list carry user ids; show names. A failed
// lookup is not cached, so the next event asks again.
function userName(id) {
  if (!names.has(id)) {
    names.set(id, api('GET', '/accounts/' + encodeURIComponent(id))
      .then((a) => a.name)
      .catch(() => { names.delete(id); return 'user ' + id; }));
  }
  return names.get(id);
}

function roomLine(ev) {
  let env;
  try { env = JSON.parse(ev.data); } catch (e) { return; }
  // The stream also carries the user's own events: only this room's count.
  if (!env || env.topic !== room.topic) return;
  const data = env.data || {};
  const line = { id: ev.lastEventId || env.id || '', type: ev.type, serverId: env.serverId || '',
                 userId: data.userId == null ? '' : String(data.userId),
                 name: typeof data.name === 'string' ? data.name : '',
                 text: typeof data.text === 'string' ? data.text : '' };
  room.lines.push(line);
  if (line.id) room.lastId = line.id;
  const li = document.createElement('li');
  li.dataset.id = line.id;
  li.dataset.type = line.type;
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = line.id + ' \u00b7 ' + (line.serverId || '-');
  meta.title = 'event id \u00b7 the backend that accepted it';
  const who = document.createElement('strong');
  const what = document.createElement('span');
  if (line.type === 'chat.message') {
    who.textContent = (line.name || 'user ' + line.userId) + ': ';
    what.textContent = line.text;
  } else {
    li.className = 'presence';
    who.textContent = 'user ' + line.userId;
    what.textContent = line.type === 'presence.join' ? ' joined' : ' left';
    // Shown at once, in its place; the name fills in when known.
    userName(line.userId).then((n) => { line.name = n; who.textContent = n; });
    refreshMembers();
  }
  li.append(meta, who, what);
  const log = $('#room-log');
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.appendChild(li);
  if (atBottom) log.scrollTop = log.scrollHeight;
}

// The member list comes from GET /presence (every instance's streams).
// A gateway without it answers 404: say so, keep chatting. One request at
// a time: a room's history can replay many join/leave events at once, and
// they all ask for the same list, so asks while one is out make one more.
// A list that comes back after a leave or a change of room is dropped.
async function refreshMembers() {
  if (room.refreshing) {
    room.refreshAgain = true;
    return;
  }
  room.refreshing = true;
  try {
    do {
      room.refreshAgain = false;
      await loadMembers();
    } while (room.refreshAgain);
  } finally {
    room.refreshing = false;
  }
}

async function loadMembers() {
  if (!room.es) return;        // left the room meanwhile
  const topic = room.topic;
  const seq = room.membersSeq;
  const current = () => seq === room.membersSeq && topic === room.topic;
  let users;
  try {
    const res = await fetch('/presence?topic=' + encodeURIComponent(topic),
                            { headers: publishKey() ? { Authorization: 'Bearer ' + publishKey() } : {} });
    if (res.status === 404) room.presence = 'unavailable';
    if (!res.ok) throw new Error('HTTP ' + res.status);
    users = (await res.json()).users;
    if (!Array.isArray(users)) throw new Error('no users in the answer');
  } catch (err) {
    if (current()) {
      $('#room-presence').textContent = room.presence === 'unavailable'
        ? 'Presence is not available here (' + err.message + ').'
        : 'Could not load who is here: ' + err.message;
    }
    return;
  }
  const list = await Promise.all(users.map((id) => userName(String(id))));
  if (!current()) return;
  room.presence = 'ok';
  room.members = list;
  $('#room-presence').textContent = '';
  $('#room-count').textContent = '(' + list.length + ')';
  $('#room-members').replaceChildren(...list.map((n) => {
    const li = document.createElement('li');
    li.textContent = n;
    return li;
  }));
}

function roomClose() {
  if (room.es) room.es.close();
  room.es = null;
}

// Without PRESENCE_EVENTS no join/leave event says the list changed, and
// an event may overtake the list it announces: ask again every few
// seconds while in the room (not once the gateway said it has no presence).
function roomPoll(on) {
  clearInterval(room.poll);
  room.poll = on ? setInterval(() => {
    if (room.presence !== 'unavailable') refreshMembers();
  }, 5000) : null;
}

// resume: the id to replay after. Joining replays the room's history
// ('0'); EventSource's own reconnects send Last-Event-ID, which the
// server prefers to the query parameter, so they resume where they were.
async function roomOpen(resume) {
  roomClose();
  let token = null;
  if (publishKey()) {
    // Secure mode: the token must grant the topic too.
    try {
      const t = await api('POST', '/tokens', { userId: room.userId, topics: [room.topic],
                                              ttlSecs: Number($('#token-ttl').value) || 3600 });
      state.tokens += 1;
      $('#tokens').textContent = String(state.tokens);
      token = t.token;
    } catch (err) {
      roomSetState('closed');
      roomSay('Could not get a stream token: ' + err.message, true);
      return;
    }
  }
  let url = '/events/sse?userId=' + encodeURIComponent(room.userId) +
            '&topic=' + encodeURIComponent(room.topic) + '&lastEventId=' + encodeURIComponent(resume);
  if (token) url += '&token=' + encodeURIComponent(token);
  roomSetState('connecting');
  roomClose();               // another open may have finished meanwhile
  const es = new EventSource(url);
  room.es = es;
  es.onopen = () => {
    room.opens += 1;
    $('#room-reconnects').textContent = String(Math.max(0, room.opens - 1));
    roomSetState('open');
    refreshMembers();
  };
  es.onerror = () => {
    if (es !== room.es) return;
    roomSetState(es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  };
  for (const t of ROOM_TYPES) es.addEventListener(t, roomLine);
  es.addEventListener('gap', () => roomSay('Some earlier messages are no longer kept.'));
  es.addEventListener('token-expired', () => {
    es.close();
    roomSetState('renewing');
    roomOpen(room.lastId || resume);
  });
}

$('#room-join-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = $('#room-name').value.trim();
  const topic = $('#room-topic').value.trim();
  if (!name || !topic) return;
  roomClose();
  roomPoll(false);
  try {
    // A user id is an account id: one account per name chosen on this page.
    if (name !== room.name || !room.userId) {
      const acct = await api('POST', '/accounts', { name });
      room.userId = acct.id;
      room.name = acct.name;
      names.set(acct.id, Promise.resolve(acct.name));
    }
  } catch (err) {
    roomSay('Could not create an account for ' + name + ': ' + err.message, true);
    return;
  }
  room.topic = topic;
  room.lines = [];
  room.members = [];
  room.opens = 0;
  room.lastId = null;
  $('#room-log').replaceChildren();
  $('#room-members').replaceChildren();
  $('#room-count').textContent = '';
  $('#room-reconnects').textContent = '0';
  $('#room-user').textContent = room.name + ' (user ' + room.userId + ') in ' + topic;
  $('#room-send').disabled = false;
  $('#room-leave').disabled = false;
  room.presence = 'unknown';
  roomSay('');
  roomOpen('0');
  roomPoll(true);
});

$('#room-leave').addEventListener('click', () => {
  roomClose();
  roomPoll(false);
  roomSetState('left');
  room.membersSeq += 1;        // drop any refresh still in flight
  room.members = [];
  $('#room-members').replaceChildren();
  $('#room-count').textContent = '';
  $('#room-send').disabled = true;
  $('#room-leave').disabled = true;
});

$('#room-send-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = $('#room-text').value;
  if (!room.userId || !room.topic || !text) return;
  try {
    const r = await api('POST', '/events', { topic: room.topic, type: 'chat.message',
                                            data: { userId: room.userId, name: room.name, text } });
    room.sent.push({ id: r.id, text });
    $('#room-text').value = '';
    roomSay('Sent as event ' + r.id + '.');
  } catch (err) {
    roomSay('Could not send: ' + err.message, true);
  }
});
