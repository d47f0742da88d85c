//! Redactor: masks payment card numbers (13-19 digits, spaces or dashes allowed, Luhn-checked; the last four
//! digits stay), e-mail addresses and configured words in a message's text or caption, in both directions. A
//! message with nothing to mask passes unchanged; otherwise the verdict is `modify`.
//!
//! Config: `{"cards": true, "emails": true, "words": ["secret"], "mask": "*"}` (all optional; words match whole
//! words, case-insensitively).

use gateway_plugin_sdk::{Event, Plugin, Verdict, config, export_plugin, log};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    cards: bool,
    emails: bool,
    words: Vec<String>,
    mask: char,
}

impl Default for Config {
    fn default() -> Self {
        Self { cards: true, emails: true, words: Vec::new(), mask: '*' }
    }
}

struct Redactor;

impl Plugin for Redactor {
    fn handle(event: Event) -> Verdict {
        let Some(text) = event.text.as_deref() else { return Verdict::pass() };
        let config: Config = match config::json() {
            Ok(config) => config,
            Err(error) => {
                log::error(&error);
                return Verdict::pass();
            }
        };
        let mut chars: Vec<char> = text.chars().collect();
        let mut masked = 0;
        if config.cards {
            masked += mask_cards(&mut chars, config.mask);
        }
        if config.emails {
            masked += mask_emails(&mut chars, config.mask);
        }
        for word in &config.words {
            masked += mask_word(&mut chars, word, config.mask);
        }
        if masked == 0 {
            return Verdict::pass();
        }
        log::info(&format!("masked {masked} item(s)"));
        Verdict::modify(chars.into_iter().collect::<String>())
    }
}

fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d })
        .sum();
    sum % 10 == 0
}

fn mask_cards(chars: &mut [char], mask: char) -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < chars.len() {
        let starts_run = chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_alphanumeric());
        if !starts_run {
            i += 1;
            continue;
        }
        // A run of digits where single spaces or dashes may separate groups.
        let mut positions = Vec::new();
        let mut j = i;
        while j < chars.len() {
            if chars[j].is_ascii_digit() {
                positions.push(j);
                j += 1;
            } else if (chars[j] == ' ' || chars[j] == '-') && j + 1 < chars.len() && chars[j + 1].is_ascii_digit() {
                j += 1;
            } else {
                break;
            }
        }
        let ends_run = j == chars.len() || !chars[j].is_alphanumeric();
        let digits: Vec<u32> = positions.iter().filter_map(|&p| chars[p].to_digit(10)).collect();
        if ends_run && (13..=19).contains(&digits.len()) && luhn(&digits) {
            for &p in &positions[..positions.len() - 4] {
                chars[p] = mask;
            }
            count += 1;
        }
        i = j.max(i + 1);
    }
    count
}

fn is_local(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._%+-".contains(c)
}

fn is_domain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-'
}

fn mask_emails(chars: &mut [char], mask: char) -> usize {
    let mut count = 0;
    for at in 0..chars.len() {
        if chars[at] != '@' {
            continue;
        }
        let mut start = at;
        while start > 0 && is_local(chars[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < chars.len() && is_domain(chars[end]) {
            end += 1;
        }
        // A sentence may end right after the address.
        while end > at + 1 && chars[end - 1] == '.' {
            end -= 1;
        }
        let domain = &chars[at + 1..end];
        let dotted = domain.iter().skip(1).any(|&c| c == '.');
        if start == at || !dotted {
            continue;
        }
        for c in chars[start..end].iter_mut() {
            if *c != '@' && *c != '.' {
                *c = mask;
            }
        }
        count += 1;
    }
    count
}

fn mask_word(chars: &mut [char], word: &str, mask: char) -> usize {
    let needle: Vec<char> = word.chars().flat_map(char::to_lowercase).collect();
    if needle.is_empty() || needle.len() > chars.len() {
        return 0;
    }
    let mut count = 0;
    let mut i = 0;
    while i + needle.len() <= chars.len() {
        let window = &chars[i..i + needle.len()];
        let same = window.iter().zip(&needle).all(|(a, b)| a.to_lowercase().eq(std::iter::once(*b)));
        let bounded = (i == 0 || !chars[i - 1].is_alphanumeric())
            && (i + needle.len() == chars.len() || !chars[i + needle.len()].is_alphanumeric());
        if same && bounded {
            for c in chars[i..i + needle.len()].iter_mut() {
                *c = mask;
            }
            count += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    count
}

export_plugin!(Redactor);
