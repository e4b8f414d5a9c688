// ssegate demo page: plain JavaScript, no build step, no dependencies.
'use strict';

const $ = (sel) => document.querySelector(sel);
// EventSource delivers named events only to listeners of that name.
const EVENT_TYPES = ['account.created', 'snapshot', 'gap', 'message', 'order.shipped'];
const state = { es: null, accountId: null, opens: 0, events: [] };
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

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
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
  if (row.id) $('#last-id').textContent = row.id;
}

// fromStart: replay the account's whole history first (lastEventId=0);
// later reconnects carry Last-Event-ID, which the server prefers.
function connect(id, fromStart) {
  if (state.es) state.es.close();
  state.accountId = id;
  state.opens = 0;
  $('#account-id').textContent = id;
  $('#snapshot').disabled = false;
  const url = '/events/sse?userId=' + encodeURIComponent(id) + (fromStart ? '&lastEventId=0' : '');
  $('#stream-url').textContent = 'GET ' + url;
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
  es.onerror = () => setState(es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  for (const t of EVENT_TYPES) es.addEventListener(t, addRow);
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
    connect(acct.id, true);
  } catch (err) {
    say('Could not create the account: ' + err.message, true);
  }
});

$('#use-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const id = $('#use-id').value.trim();
  if (id) connect(id, false);
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
