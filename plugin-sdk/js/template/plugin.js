// A gateway plugin in JavaScript: copy this file, change `handle`, build it with
//   node plugin-sdk/js/build.mjs plugin.js plugin.wasm
// The event and the verdict are the types of plugin-sdk/wit/plugin.wit, in jco's JavaScript mapping: records are
// objects with camelCase fields (`event.chatJid`, `event.timestampMs` is a BigInt), enums are strings
// (`event.direction === 'inbound'`), `option` is a value or `undefined`, a variant is `{ tag, val }`.
import { get as configGet } from 'gateway:plugin/config@0.1.0';
import { now } from 'gateway:plugin/clock@0.1.0';
import { get as kvGet, set as kvSet } from 'gateway:plugin/kv@0.1.0';
import { write } from 'gateway:plugin/log@0.1.0';

export function handle(event) {
  const config = JSON.parse(configGet() || '{}');
  if (event.direction !== 'inbound' || !event.text) {
    return { action: { tag: 'continue' }, replies: [] };
  }
  // The world's clock is the only clock: `Date` is frozen at the moment the component was built.
  const seen = kvGet(event.chatJid);
  // kv values are bytes; `set` throws when a limit is reached (the call goes on if you catch it).
  kvSet(event.chatJid, new TextEncoder().encode(String(now())));
  write('info', `message from ${event.sender}; seen before: ${seen !== undefined}`);
  const replies = seen === undefined && config.greeting ? [{ text: config.greeting }] : [];
  // Other actions: { tag: 'drop', val: 'reason' }, { tag: 'modify', val: 'new text' }.
  return { action: { tag: 'continue' }, replies };
}
