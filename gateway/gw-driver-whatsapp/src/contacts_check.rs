//! Number checks ("is this number on WhatsApp?") over whatsapp-rust's usync query.
//!
//! The library answers only for the numbers it found, keyed by JID, and may name an account by its LID with the
//! phone number beside it; [`number_checks`] turns that into one answer per number asked, in order. Only the
//! mapping is tested here: the query itself never ran against WhatsApp (the sandbox exercises the route).

use std::collections::HashMap;

use gw_sessions::{DriverError, NumberCheck};
use whatsapp_rust::client::Client;
use whatsapp_rust::{IsOnWhatsAppResult, Jid};

/// Asks WhatsApp about `phones` (digits only) in one query.
pub(crate) async fn check_numbers(client: &Client, phones: &[String]) -> Result<Vec<NumberCheck>, DriverError> {
    let jids: Vec<Jid> = phones.iter().map(|phone| Jid::pn(phone.as_str())).collect();
    let results = client
        .contacts()
        .is_on_whatsapp(&jids)
        .await
        .map_err(|e| DriverError::Transient(format!("number check: {e}")))?;
    let answers: Vec<Answer<'_>> = results.iter().map(Answer::from).collect();
    Ok(number_checks(phones, &answers))
}

/// What the mapping reads of one of the library's answers (whose type cannot be built outside it, so tests build
/// this instead).
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub jid: &'a Jid,
    pub lid: Option<&'a Jid>,
    pub pn_jid: Option<&'a Jid>,
    pub is_registered: bool,
}

impl<'a> From<&'a IsOnWhatsAppResult> for Answer<'a> {
    fn from(r: &'a IsOnWhatsAppResult) -> Self {
        Self { jid: &r.jid, lid: r.lid.as_ref(), pn_jid: r.pn_jid.as_ref(), is_registered: r.is_registered }
    }
}

/// One answer per number asked, in order; a number WhatsApp did not answer for is not on it.
pub fn number_checks(phones: &[String], results: &[Answer<'_>]) -> Vec<NumberCheck> {
    let mut by_phone: HashMap<&str, &Answer<'_>> = HashMap::new();
    for result in results {
        // A LID-primary answer names the number in `pn_jid`.
        let pn = if result.jid.is_lid() { result.pn_jid } else { Some(result.jid) };
        if let Some(pn) = pn {
            by_phone.insert(pn.user.as_str(), result);
        }
    }
    phones
        .iter()
        .map(|phone| match by_phone.get(phone.as_str()) {
            Some(result) if result.is_registered => {
                let lid = if result.jid.is_lid() { Some(result.jid) } else { result.lid };
                NumberCheck {
                    phone: phone.clone(),
                    on_whatsapp: true,
                    jid: Some(Jid::pn(phone.as_str()).to_string()),
                    lid: lid.map(Jid::to_string),
                }
            }
            _ => NumberCheck { phone: phone.clone(), on_whatsapp: false, jid: None, lid: None },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result<'a>(jid: &'a Jid, lid: Option<&'a Jid>, pn_jid: Option<&'a Jid>, is_registered: bool) -> Answer<'a> {
        Answer { jid, lid, pn_jid, is_registered }
    }

    #[test]
    fn every_number_gets_one_answer_in_order_with_its_lid_when_named() {
        let phones: Vec<String> = ["15550001", "15550002", "15550003", "15550004"].map(String::from).to_vec();
        let [lid3, pn3, pn1, lid1, pn2] =
            [Jid::lid("777"), Jid::pn("15550003"), Jid::pn("15550001"), Jid::lid("555"), Jid::pn("15550002")];
        let results = [
            // Answered in another order than asked; one PN-primary with its LID, one LID-primary.
            result(&lid3, None, Some(&pn3), true),
            result(&pn1, Some(&lid1), None, true),
            result(&pn2, None, None, false),
        ];
        let checks = number_checks(&phones, &results);
        let expected = [
            ("15550001", true, Some("15550001@s.whatsapp.net"), Some("555@lid")),
            ("15550002", false, None, None),
            ("15550003", true, Some("15550003@s.whatsapp.net"), Some("777@lid")),
            ("15550004", false, None, None),
        ];
        assert_eq!(checks.len(), expected.len());
        for (check, (phone, on, jid, lid)) in checks.iter().zip(expected) {
            assert_eq!(check.phone, phone);
            assert_eq!(check.on_whatsapp, on, "{phone}");
            assert_eq!(check.jid.as_deref(), jid, "{phone}");
            assert_eq!(check.lid.as_deref(), lid, "{phone}");
        }
    }
}
