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
