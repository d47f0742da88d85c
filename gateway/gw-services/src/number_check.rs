//! Number checks ("which of these numbers are on WhatsApp?") with a bounded cache in front of the driver.
//!
//! Clients check before every send, often the same numbers again; WhatsApp rate-limits these queries and bans
//! accounts that make too many. The answers are kept per instance (never shared between tenants) for a bounded
//! time and number of entries; only the numbers not cached go to the driver, in one query.

use std::collections::HashMap;
use std::time::Duration;

use gw_core::{Instance, InstanceId};
use gw_sessions::{Engine, EngineError, InvalidField, NumberCheck};

/// Most numbers one check takes.
pub const MAX_NUMBER_CHECK: usize = 500;

/// Most answers the cache keeps (over all instances of the node).
const CACHE_CAPACITY: u64 = 200_000;

/// The answers of recent checks, per instance.
#[derive(Clone)]
pub(crate) struct NumberCache {
    /// `None`: caching is off (a TTL of zero).
    entries: Option<moka::future::Cache<(InstanceId, String), NumberCheck>>,
}

impl NumberCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        let entries = (!ttl.is_zero())
            .then(|| moka::future::Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(ttl).build());
        Self { entries }
    }

    /// One answer per number in `phones` (digits), in order: cached ones as cached, the others from the driver.
    pub(crate) async fn check(
        &self,
        engine: &Engine,
        instance: &Instance,
        phones: &[String],
    ) -> Result<Vec<NumberCheck>, EngineError> {
        let mut known: HashMap<String, NumberCheck> = HashMap::new();
        let mut missing: Vec<String> = Vec::new();
        for phone in phones {
            if known.contains_key(phone) || missing.contains(phone) {
                continue;
            }
            match self.get(instance.id, phone).await {
                Some(check) => {
                    known.insert(phone.clone(), check);
                }
                None => missing.push(phone.clone()),
            }
        }
        if !missing.is_empty() {
            for check in engine.check_numbers(instance, &missing).await? {
                if let Some(entries) = &self.entries {
                    entries.insert((instance.id, check.phone.clone()), check.clone()).await;
                }
                known.insert(check.phone.clone(), check);
            }
        }
        // A driver that skipped a number answered nothing for it: not on WhatsApp, and not cached.
        Ok(phones
            .iter()
            .map(|phone| {
                known.get(phone).cloned().unwrap_or_else(|| NumberCheck {
                    phone: phone.clone(),
                    on_whatsapp: false,
                    jid: None,
                    lid: None,
                })
            })
            .collect())
    }

    async fn get(&self, instance_id: InstanceId, phone: &str) -> Option<NumberCheck> {
        self.entries.as_ref()?.get(&(instance_id, phone.to_owned())).await
    }
}

/// The digits of each number (`+1 555 000 1111`, `15550001111`, `15550001111@s.whatsapp.net`), 1 to
/// [`MAX_NUMBER_CHECK`] of them.
pub(crate) fn phones(numbers: &[String]) -> Result<Vec<String>, InvalidField> {
    if numbers.is_empty() || numbers.len() > MAX_NUMBER_CHECK {
        return Err(InvalidField { field: "numbers", reason: format!("1 to {MAX_NUMBER_CHECK} phone numbers") });
    }
    numbers
        .iter()
        .map(|number| {
            let jid = gw_sessions::normalize_recipient("numbers", number)?;
            jid.strip_suffix("@s.whatsapp.net").map(str::to_owned).ok_or_else(|| InvalidField {
                field: "numbers",
                reason: format!("{number:?} is not a phone number (LIDs and groups cannot be checked)"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_in_any_common_spelling_and_bounded() {
        let given = ["+1 555 000-1111", "15550002222@s.whatsapp.net", "(1) 555.000.3333"].map(String::from);
        assert_eq!(phones(&given).expect("valid"), ["15550001111", "15550002222", "15550003333"]);
        assert!(phones(&[]).is_err());
        assert!(phones(&vec!["+15550001111".to_owned(); MAX_NUMBER_CHECK + 1]).is_err());
        for bad in ["12@lid", "120363@g.us", "hello", "+0123456789"] {
            assert!(phones(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
