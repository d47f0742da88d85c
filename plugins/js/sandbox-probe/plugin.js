// A test plugin (not for tenants): it tries one thing a JavaScript plugin must not be able to do, named by its
// config (`{"probe": "date"}`), and replies with what it saw, so the host's tests can check the sandbox from the
// outside. A probe the engine cannot serve traps (the host reports a failed call), which is also an answer.
//
// - `clock`: the world's clock, the one a plugin may read;
// - `date`, `performance`: the real clock must not show through;
// - `random`, `crypto`: randomness from outside;
// - `fetch`, `process`, `require`: the network and files (the engine has no file API; Node's is not there).
import { get as configGet } from 'gateway:plugin/config@0.1.0';
import { now } from 'gateway:plugin/clock@0.1.0';

const PROBES = {
  clock: () => now(),
  date: () => Date.now(),
  performance: () => (typeof performance === 'undefined' ? 'absent' : performance.now()),
  random: () => Math.random(),
  crypto: () => (typeof crypto === 'undefined' ? 'absent' : crypto.getRandomValues(new Uint8Array(4)).join(',')),
  fetch: () => (typeof fetch === 'undefined' ? 'absent' : fetch('http://127.0.0.1:9/')),
  process: () => typeof process,
  require: () => typeof require,
};

export function handle(event) {
  const { probe } = JSON.parse(configGet());
  let seen;
  try {
    seen = String(PROBES[probe]());
  } catch (error) {
    seen = `threw ${error && error.name ? error.name : error}`;
  }
  return { action: { tag: 'continue' }, replies: [{ text: `${probe}=${seen}` }] };
}
