// Keyword auto-responder, the JavaScript port of plugins/keyword-responder (same config, same behaviour): an
// inbound message that matches a rule gets the rule's reply; the message itself is delivered unchanged.
//
// Config: {"rules": [{"keywords": ["price"], "reply": "Our prices: ...", "match": "word"}], "case_sensitive":
// false, "all_matches": false, "reply_to_outbound": false}. `match` is `word` (default), `contains` or `exact`.

import { get as configGet } from 'gateway:plugin/config@0.1.0';
import { write } from 'gateway:plugin/log@0.1.0';

const PASS = { tag: 'continue' };

export function handle(event) {
  if (event.text === undefined || event.text === null) {
    return { action: PASS, replies: [] };
  }
  let config;
  try {
    config = JSON.parse(configGet());
  } catch (error) {
    write('error', `config is not JSON: ${error}`);
    return { action: PASS, replies: [] };
  }
  const rules = Array.isArray(config.rules) ? config.rules : [];
  // Normally only messages from the outside world are answered.
  if (event.direction !== 'inbound' && !config.reply_to_outbound) {
    return { action: PASS, replies: [] };
  }
  const fold = (s) => (config.case_sensitive ? s : s.toLowerCase());
  const text = fold(event.text);
  const replies = [];
  for (const rule of rules) {
    const keywords = Array.isArray(rule.keywords) ? rule.keywords : [];
    if (keywords.some((keyword) => matches(text, fold(String(keyword)), rule.match ?? 'word'))) {
      replies.push({ text: String(rule.reply) });
      if (!config.all_matches) {
        break;
      }
    }
  }
  if (replies.length > 0) {
    write('info', `matched ${replies.length} rule(s)`);
  }
  return { action: PASS, replies };
}

function matches(text, keyword, mode) {
  if (keyword.length === 0) {
    return false;
  }
  switch (mode) {
    case 'exact':
      return text.trim() === keyword;
    case 'contains':
      return text.includes(keyword);
    default:
      return words(text).includes(keyword);
  }
}

// Runs of letters and digits, as in the Rust plugin (`char::is_alphanumeric`). The engine is built without
// Unicode property escapes (`\p{L}`), so a letter is a character with distinct cases, or above ASCII and not
// a space or punctuation.
function words(text) {
  const out = [];
  let word = '';
  for (const c of text) {
    if (isAlphanumeric(c)) {
      word += c;
    } else if (word) {
      out.push(word);
      word = '';
    }
  }
  if (word) {
    out.push(word);
  }
  return out;
}

function isAlphanumeric(c) {
  if (c >= '0' && c <= '9') {
    return true;
  }
  if (c.toLowerCase() !== c.toUpperCase()) {
    return true;
  }
  return c > '\u007f' && !/[\s\u2000-\u206f\u3000-\u303f\uff00-\uff0f]/.test(c);
}
